"""Checkpoint reading and loading: the lazy safetensors index, skip_init and the initialisers it defers."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import speechseq
from speechseq import checkpoints
from speechseq.checkpoints import StoredTensor, load_into, read_weights, skip_init
from speechseq.errors import CheckpointError
from speechseq.keymap import KeyMap
from speechseq.nn import native
from speechseq.nn.linear import Linear

IDENTITY = KeyMap([("", "")])


def test_safetensors_are_indexed_then_read_tensor_by_tensor(tmp_path):
    torch.manual_seed(0)
    tensors = {
        "f32": torch.randn(5, 3),
        "bf16": torch.randn(4).bfloat16(),
        "f16": torch.randn(2, 2).half(),
        "i64": torch.arange(6).reshape(2, 3),
        "u8": torch.arange(7, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
    }
    save_file(tensors, str(tmp_path / "model.safetensors"))
    state = read_weights(tmp_path)
    assert set(state) == set(tensors) and all(isinstance(value, StoredTensor) for value in state.values())
    for name, tensor in tensors.items():
        assert (state[name].shape, state[name].dtype) == (tensor.shape, tensor.dtype)
        assert torch.equal(state[name].load(), tensor)
    # Layout changes (GPT-2's Conv1D weights) are worked out on the meta device, before anything is read.
    pieces = state["f32"].t().chunk(2, dim=0)
    assert [piece.shape for piece in pieces] == [torch.Size([2, 5]), torch.Size([1, 5])]
    assert torch.equal(pieces[1].load(), tensors["f32"].t()[2:])


def test_copies_keep_the_target_layout_and_dtype_block_by_block(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "_BLOCK_BYTES", 40)  # 2 rows of 10 halves a block: 6 blocks for 11 rows
    weight = torch.randn(11, 10).half()
    save_file({"w": weight}, str(tmp_path / "model.safetensors"))
    stored = read_weights(tmp_path)["w"]
    target = torch.empty(10, 11).t()  # float32, column-major (nn/linear.py)
    stored.copy_to(target)
    assert target.stride() == (1, 11) and torch.equal(target, weight.float())
    same = torch.empty(11, 10, dtype=torch.half)  # same layout and dtype: read in place
    stored.copy_to(same)
    assert torch.equal(same, weight)


def test_truncated_safetensors_are_refused(tmp_path):
    save_file({"weight": torch.randn(64)}, str(tmp_path / "model.safetensors"))
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[:-4])
    with pytest.raises(CheckpointError, match="cannot read weights.*weight: data offsets"):
        read_weights(tmp_path)


@pytest.mark.parametrize("kernel", [True, False])
def test_skip_init_draws_nothing_and_loading_keeps_the_layout(kernel, monkeypatch):
    # Without the few-row kernel, wide Linear weights are stored transposed (nn/linear.py).
    monkeypatch.setattr(native, "available", lambda: kernel)
    torch.manual_seed(0)
    reference = nn.Sequential(Linear(4, 6), nn.LayerNorm(6), Linear(6, 3), nn.Embedding(5, 3, padding_idx=1))
    rng = torch.random.get_rng_state()
    with skip_init():
        model = nn.Sequential(Linear(4, 6), nn.LayerNorm(6), Linear(6, 3), nn.Embedding(5, 3, padding_idx=1))
    assert torch.equal(torch.random.get_rng_state(), rng)
    state = {name: StoredTensor.of(tensor.clone()) for name, tensor in reference.state_dict().items()}
    load_into(model, state, IDENTITY, "test")
    assert model[0].weight.stride() == ((4, 1) if kernel else (1, 6)) and model[2].weight.is_contiguous()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, reference.state_dict()[name]), name
    assert not any(hasattr(param, "_speechseq_deferred_init") for param in model.parameters())


def test_absent_optional_parameter_is_initialised_as_its_module_would():
    bias = torch.randn(6)
    torch.manual_seed(0)
    reference = Linear(4, 6)
    with skip_init():
        model = Linear(4, 6)
    torch.manual_seed(0)
    load_into(model, {"bias": StoredTensor.of(bias)}, IDENTITY, "test", optional={"weight"})
    assert torch.equal(model.weight, reference.weight) and torch.equal(model.bias, bias)


def test_load_model_keeps_wide_weights_column_major(tmp_path):
    pytest.importorskip("transformers")
    from hf_models import make_s2t

    hf = make_s2t(tmp_path)
    model = speechseq.load_model(tmp_path)
    wide = [m for m in model.modules() if isinstance(m, Linear) and m.out_features >= m.in_features]
    # Column-major without the few-row kernel, which reads the usual row-major layout faster (nn/linear.py).
    stride = (lambda m: (m.in_features, 1)) if native.available() else (lambda m: (1, m.out_features))
    assert wide and all(m.weight.stride() == stride(m) for m in wide)
    assert torch.equal(model.lm_head.weight, hf.lm_head.weight)
