"""Wav2Vec2-BERT assembly: input projection -> conformer stack -> optional FFN and adapter -> optional head.

`Wav2Vec2BertEncoder` is the trunk (transformers' Wav2Vec2BertModel), which encoder-decoder models embed;
`Wav2Vec2BertModel` adds the head that config.head names (transformers' Wav2Vec2BertFor* classes).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...errors import InputError
from ...nn.conformer import ConformerAdapter, ConformerEncoder, ConformerSpec
from ...nn.feedforward import FeedForward
from ...nn.masks import lengths_to_padding_mask
from ..heads import EncoderStates, build_head, valid_lengths
from ..protocols import EncoderOutput
from .config import Wav2Vec2BertConfig


def _conformer_spec(config: Wav2Vec2BertConfig) -> ConformerSpec:
    return ConformerSpec(
        d_model=config.d_model,
        num_heads=config.num_heads,
        ffn_dim=config.ffn_dim,
        activation=config.activation,
        kernel_size=config.conv_depthwise_kernel_size,
        position=config.position,
        left_positions=config.left_max_position_embeddings,
        right_positions=config.right_max_position_embeddings,
        rotary_base=config.rotary_embedding_base,
        dropout=config.hidden_dropout,
        attention_dropout=config.attention_dropout,
        activation_dropout=config.activation_dropout,
        conv_dropout=config.conformer_conv_dropout,
        layerdrop=config.layerdrop,
        layer_norm_eps=config.layer_norm_eps,
    )


def _adapter(config: Wav2Vec2BertConfig) -> ConformerAdapter:
    spec = dataclasses.replace(
        _conformer_spec(config), d_model=config.adapter_width, activation=config.adapter_act, position=None
    )
    return ConformerAdapter(
        config.d_model, spec, config.num_adapter_layers, config.adapter_kernel_size, config.adapter_stride
    )


class Wav2Vec2BertEncoder(nn.Module):
    """Stacked fbank frames (B, T, 160) -> encoder states, at T frames or fewer after the adapter."""

    def __init__(self, config: Wav2Vec2BertConfig):
        super().__init__()
        self.feature_norm = nn.LayerNorm(config.input_dim, eps=config.layer_norm_eps)
        self.feature_proj = nn.Linear(config.input_dim, config.d_model)
        self.feature_dropout = nn.Dropout(config.feat_proj_dropout)
        # Used only by SpecAugment in training; kept so that checkpoints load and save unchanged.
        masking = config.mask_time_prob > 0 or config.mask_feature_prob > 0
        self.masked_spec_embed = nn.Parameter(torch.rand(config.d_model)) if masking else None
        self.conformer = ConformerEncoder(_conformer_spec(config), config.num_layers)
        self.intermediate_ffn = None
        if config.use_intermediate_ffn_before_adapter:
            self.intermediate_ffn = FeedForward(
                config.d_model, config.ffn_dim, "relu", config.activation_dropout
            )
        self.ffn_dropout = nn.Dropout(config.hidden_dropout)
        self.adapter = _adapter(config) if config.add_adapter else None

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Return output frames for input frame counts (B,): unchanged, or pooled by the adapter."""
        return lengths if self.adapter is None else self.adapter.output_lengths(lengths)

    def forward(
        self, features: Tensor, padding_mask: Tensor | None, keep_layers: bool = False
    ) -> EncoderStates:
        """Encode features (B, T, F); padding_mask (B, T) marks padded frames True (None: no padding)."""
        hidden = self.feature_dropout(self.feature_proj(self.feature_norm(features)))
        frames = (
            (~padding_mask).sum(dim=1)
            if padding_mask is not None
            else torch.full((features.shape[0],), features.shape[1], device=features.device)
        )
        hidden, layers = self.conformer(hidden, padding_mask, keep_layers)
        if self.intermediate_ffn is not None:
            hidden = hidden + 0.5 * self.ffn_dropout(self.intermediate_ffn(hidden))
        if self.adapter is not None:
            # The adapter pools padded frames along with valid ones (as transformers); only lengths are tracked.
            lengths = None if padding_mask is None else frames
            hidden, lengths = self.adapter(hidden, lengths)
            padding_mask = None
            if lengths is not None:
                # transformers' length rule pads by kernel // 2 but the convs by stride // 2; where that rule
                # overshoots (e.g. kernel 5, stride 3) the clip simply covers every frame.
                padding_mask = lengths_to_padding_mask(lengths.clamp(max=hidden.shape[1]), hidden.shape[1])
        return EncoderStates(hidden, padding_mask, layers, self.output_lengths(frames))


@dataclass
class Wav2Vec2BertOutput:
    """What a forward pass returns; head fields are None without that head."""

    last_hidden_state: Tensor  # (B, S, D) encoder output
    padding_mask: Tensor | None  # (B, S) True = pad; None without an attention mask
    lengths: Tensor  # (B,) valid frames of last_hidden_state (and of frame logits)
    logits: Tensor | None = None  # CTC / frame: (B, S, C); utterance: (B, C); x-vector: (B, E)
    loss: Tensor | None = None  # when labels are given
    embeddings: Tensor | None = None  # x-vector speaker embeddings (B, E)
    hidden_states: tuple[Tensor, ...] | None = None  # first-layer input + every layer output (B, T, D)


class Wav2Vec2BertModel(nn.Module):
    """transformers' Wav2Vec2BertModel, or one of its head models, as config.head says.

    Heads: "ctc" (Wav2Vec2BertForCTC), "sequence_classification", "frame_classification" (ForAudioFrame-
    Classification) and "xvector". As the encoder of a speech encoder-decoder model use `encode`.
    """

    main_input_name = "input_features"
    model_type = "wav2vec2-bert"

    @property
    def task(self) -> str | None:
        """The head's job ("ctc", "sequence_classification", ...), or None for the bare encoder."""
        return self.config.head

    def __init__(self, config: Wav2Vec2BertConfig):
        super().__init__()
        self.config = config
        self.encoder = Wav2Vec2BertEncoder(config)
        # Only the CTC head reads the adapter's output; the others read conformer-width states.
        width = config.output_width if config.head == "ctc" else config.d_model
        self.head = build_head(config.head, config, width, config.num_layers + 1)

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Audio samples per output frame, transformers' formula: 2 * input_dim, times the adapter's pooling."""
        pooling = self.config.adapter_stride**self.config.num_adapter_layers if self.config.add_adapter else 1
        return 2 * self.config.input_dim * pooling

    def encode(self, input_features: Tensor, attention_mask: Tensor | None = None) -> EncoderOutput:
        """Encode stacked fbank frames (B, T, F) with an optional (B, T) mask (1 = valid frame).

        Returns:
            Encoder states (B, S, D) after the adapter, and their padding mask at that rate.
        """
        states = self._states(input_features, attention_mask, keep_layers=False)
        return EncoderOutput(states.hidden, states.padding_mask)

    def forward(
        self,
        input_features: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> Wav2Vec2BertOutput:
        """Run the encoder and the head.

        Args:
            input_features: Stacked fbank frames (B, T, F) from SeamlessM4TFeatureExtractor.
            attention_mask: (B, T), 1 on valid frames of right-padded clips.
            labels: CTC: ids (B, U) padded with -100; utterance classes and x-vector speakers: (B,);
                frames: one-hot (B, T, C). The loss then equals transformers'.
            output_hidden_states: Also return every layer's states.
        """
        if labels is not None and self.head is None:
            raise InputError("labels were given, but this model has no head to compute a loss with")
        weighted = self.config.use_weighted_layer_sum and self.head is not None
        states = self._states(input_features, attention_mask, keep_layers=output_hidden_states or weighted)
        result = None if self.head is None else self.head(states, labels)
        layers = tuple(states.layers) if output_hidden_states and states.layers is not None else None
        return Wav2Vec2BertOutput(
            last_hidden_state=states.hidden,
            padding_mask=states.padding_mask,
            lengths=valid_lengths(states.padding_mask, states.hidden),
            logits=None if result is None else result.logits,
            loss=None if result is None else result.loss,
            embeddings=None if result is None else result.embeddings,
            hidden_states=layers,
        )

    def _states(self, features: Tensor, attention_mask: Tensor | None, keep_layers: bool) -> EncoderStates:
        padding_mask = _check_inputs(features, attention_mask, self.config.input_dim)
        dtype = next(self.parameters()).dtype
        return self.encoder(features.to(dtype), padding_mask, keep_layers)

    def save_pretrained(self, folder) -> None:
        """Write config.json and model.safetensors in transformers' layout."""
        from pathlib import Path

        from .family import save

        save(self, Path(folder))


def _check_inputs(features: Tensor, attention_mask: Tensor | None, width: int) -> Tensor | None:
    """Validate the inputs and return the padding mask (True = pad), or None without an attention mask."""
    if not isinstance(features, Tensor) or features.dim() != 3 or features.shape[-1] != width:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise InputError(f"input_features must be a tensor of shape (B, T, {width}), got {shape}")
    if not features.is_floating_point():
        raise InputError(f"input_features must be floating point, got {features.dtype}")
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise InputError(f"input_features is empty: shape {tuple(features.shape)}")
    if attention_mask is None:
        return None
    if tuple(attention_mask.shape) != tuple(features.shape[:2]):
        raise InputError(
            f"attention_mask shape {tuple(attention_mask.shape)} does not match input_features "
            f"{tuple(features.shape[:2])}"
        )
    lengths = (attention_mask != 0).sum(dim=1).to(features.device)
    padding_mask = lengths_to_padding_mask(lengths, features.shape[1])
    if not torch.equal(padding_mask, attention_mask.to(features.device) == 0):
        raise InputError("attention_mask must be right-padded: ones for valid frames, then zeros")
    if int(lengths.min()) == 0:
        empty = (lengths == 0).nonzero().flatten().tolist()
        raise InputError(f"attention_mask marks no valid frame in batch item(s) {empty}")
    return padding_mask
