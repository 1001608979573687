"""Generation options with transformers' names, defaults and precedence."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ..errors import InputError


@dataclass(frozen=True)
class GenerationOptions:
    """What a search does; defaults are transformers' GenerationConfig defaults."""

    max_length: int | None = None  # total length, counting the decoder start token; unset: 20 new tokens
    max_new_tokens: int | None = None  # overrides max_length when set
    min_length: int = 0  # eos is suppressed while the sequence is shorter
    min_new_tokens: int | None = None  # eos is suppressed until this many tokens were generated
    num_beams: int = 1  # 1 = greedy or sampling
    early_stopping: bool | str = False  # True, False or "never" (beam search stopping rule)
    length_penalty: float = 1.0  # beam score = sum log-prob / length ** length_penalty
    no_repeat_ngram_size: int = 0  # forbid repeating any n-gram of this size
    repetition_penalty: float = 1.0  # CTRL penalty on tokens already in the sequence
    forced_bos_token_id: int | None = None  # force the first generated token (target language tag)
    forced_eos_token_id: int | None = None  # force eos at the last position
    bad_words_ids: list | None = None  # token sequences that must never be generated
    suppress_tokens: list | None = None  # ids never generated
    begin_suppress_tokens: list | None = None  # ids not generated as the first token
    num_return_sequences: int = 1  # sequences returned per input
    do_sample: bool = False  # sample instead of taking the best token
    temperature: float = 1.0  # sampling temperature
    top_k: int = 50  # keep the k most likely tokens when sampling
    top_p: float = 1.0  # nucleus sampling mass
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list | None = None
    decoder_start_token_id: int | None = None

    @property
    def eos_ids(self) -> list[int]:
        eos = self.eos_token_id
        return [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))


_DEFAULT_NEW_TOKENS = 20
NAMES = {f.name for f in fields(GenerationOptions)}
# Keys transformers' generate accepts that change nothing here (output formatting, caching switches).
_HARMLESS = {
    "use_cache",
    "return_dict_in_generate",
    "output_scores",
    "output_attentions",
    "output_hidden_states",
    "transformers_version",
    "_from_model_config",
}


def resolve_options(defaults: dict, special_tokens: dict, user: dict) -> GenerationOptions:
    """Combine checkpoint defaults and the caller's options (caller wins) and validate them."""
    unknown = sorted(set(user) - NAMES - _HARMLESS)
    if unknown:
        raise InputError(f"unknown generation option(s) {unknown}; known options: {sorted(NAMES)}")
    merged = {k: v for k, v in special_tokens.items() if k in NAMES and v is not None}
    merged.update({k: v for k, v in defaults.items() if k in NAMES and v is not None})
    merged.update({k: v for k, v in user.items() if k in NAMES})
    options = GenerationOptions(**merged)
    _check_types(options)
    if options.max_new_tokens is not None:
        options = replace(options, max_length=options.max_new_tokens + 1)
    elif options.max_length is None:  # transformers 5: with no length configured anywhere, 20 new tokens
        options = replace(options, max_length=_DEFAULT_NEW_TOKENS + 1)
    if options.min_new_tokens is not None:  # as max_new_tokens: it takes precedence over min_length
        options = replace(options, min_length=options.min_new_tokens + 1)
    if options.pad_token_id is None and options.eos_ids:
        options = replace(options, pad_token_id=options.eos_ids[0])
    if options.decoder_start_token_id is None:
        options = replace(options, decoder_start_token_id=options.bos_token_id)
    _validate(options)
    return options


_COUNTS = (
    "max_length",
    "max_new_tokens",
    "min_length",
    "min_new_tokens",
    "num_beams",
    "num_return_sequences",
    "no_repeat_ngram_size",
    "top_k",
)
_TOKEN_IDS = ("decoder_start_token_id", "pad_token_id", "forced_bos_token_id", "forced_eos_token_id")
_TOKEN_LISTS = ("eos_token_id", "suppress_tokens", "begin_suppress_tokens", "bad_words_ids")


def check_token_ids(o: GenerationOptions, vocab_size: int | None) -> None:
    """Refuse token ids the model has no row for, naming the option (instead of an IndexError mid-search)."""
    if vocab_size is None:
        return
    named = [(name, getattr(o, name)) for name in _TOKEN_IDS]
    named += [(name, i) for name in _TOKEN_LISTS for i in _flat_ids(getattr(o, name))]
    for name, token in named:
        if token is not None and not 0 <= token < vocab_size:
            raise InputError(f"{name} {token} is not a token id of this model (0 to {vocab_size - 1})")


def _flat_ids(value) -> list:
    """The ids of a token-list option: one int, a list of ints, or (bad_words_ids) a list of lists."""
    if value is None:
        return []
    if isinstance(value, int) or not isinstance(value, (list, tuple)):
        return [value]
    return [i for item in value for i in (item if isinstance(item, (list, tuple)) else [item])]


def _check_types(o: GenerationOptions) -> None:
    for name in (*_COUNTS, *_TOKEN_IDS):
        value = getattr(o, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InputError(f"{name} must be an integer, got {value!r}")
    for name in _TOKEN_LISTS:
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in _flat_ids(getattr(o, name))):
            raise InputError(f"{name} must be token ids (ints, or lists of ints), got {getattr(o, name)!r}")


def _validate(o: GenerationOptions) -> None:
    checks = [
        (o.decoder_start_token_id is not None, "decoder_start_token_id (and bos_token_id) is not set"),
        (o.max_length >= 2, f"max_length must leave room for one new token, got {o.max_length}"),
        (o.num_beams >= 1, f"num_beams must be >= 1, got {o.num_beams}"),
        (o.num_return_sequences >= 1, f"num_return_sequences must be >= 1, got {o.num_return_sequences}"),
        (
            o.num_beams > 1 or o.do_sample or o.num_return_sequences == 1,
            "greedy search returns one sequence per input: use num_beams >= num_return_sequences or do_sample",
        ),
        (
            o.num_return_sequences <= o.num_beams or o.num_beams == 1,
            f"num_return_sequences ({o.num_return_sequences}) must be <= num_beams ({o.num_beams})",
        ),
        (not o.do_sample or o.temperature > 0, f"temperature must be > 0, got {o.temperature}"),
        (0 < o.top_p <= 1, f"top_p must be in (0, 1], got {o.top_p}"),
        (o.top_k >= 0, f"top_k must be >= 0, got {o.top_k}"),
        (o.repetition_penalty > 0, f"repetition_penalty must be > 0, got {o.repetition_penalty}"),
        (
            o.early_stopping in (True, False, "never"),
            f"early_stopping must be True, False or 'never', got {o.early_stopping!r}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)
    suppressed = set(o.suppress_tokens or ())
    for name in ("forced_bos_token_id", "forced_eos_token_id"):
        forced = getattr(o, name)
        forced = {forced} if isinstance(forced, int) else set(forced or ())
        if forced and forced <= suppressed:
            # Every logit would be -inf at the forced step: NaN probabilities, no token to take.
            raise InputError(
                f"{name} {sorted(forced)} is also in suppress_tokens: a token cannot be both forced and "
                "suppressed; drop it from one of them"
            )
    if o.num_beams > 1 and o.do_sample:
        raise InputError(
            "beam sampling (num_beams > 1 with do_sample) is not supported; use one or the other"
        )
