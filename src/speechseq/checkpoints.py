"""Read checkpoint weights safely and load them through a key map with a readable report of what does not fit.

Loading holds little more than the model in memory: families build it under skip_init (no random values drawn
for weights the checkpoint overwrites), read_weights only indexes the weight files, and load_into reads each
tensor straight into its parameter.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .errors import CheckpointError
from .keymap import KeyMap

SAFE_SINGLE, SAFE_INDEX = "model.safetensors", "model.safetensors.index.json"
PT_SINGLE, PT_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"


def read_json(path: Path) -> dict:
    """Read a JSON object, naming the file in every error."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


def weight_files(folder: Path) -> list[Path]:
    """Return the weight files of a checkpoint: safetensors first, pickled .bin only when no safetensors exist."""
    for single, index in ((SAFE_SINGLE, SAFE_INDEX), (PT_SINGLE, PT_INDEX)):
        if (folder / single).is_file():
            return [folder / single]
        if (folder / index).is_file():
            shards = sorted(set(read_json(folder / index).get("weight_map", {}).values()))
            missing = [name for name in shards if not (folder / name).is_file()]
            if missing or not shards:
                raise CheckpointError(
                    f"{folder / index} names shards that are missing: {missing or 'none listed'}"
                )
            return [folder / name for name in shards]
    raise CheckpointError(
        f"no weights in {folder}: expected {SAFE_SINGLE}, {SAFE_INDEX}, {PT_SINGLE} or {PT_INDEX}"
    )


def read_weights(folder: Path) -> dict[str, StoredTensor]:
    """Index every tensor of a checkpoint folder by name; values are read from disk only when loaded."""
    state: dict[str, StoredTensor] = {}
    for path in weight_files(folder):
        state.update(_read_file(path))
    return state


class StoredTensor:
    """A tensor of a weight file, known by shape and dtype until copy_to() or load() reads its values (CPU).

    load_into copies one stored tensor at a time into its parameter, reading a safetensors file straight into
    the parameter's memory or, where the layout or dtype differs, a block of rows at a time: a checkpoint never
    lies in memory beside the model, whole or tensor by tensor. t() and chunk() return the transposed tensor or
    its pieces, still unread, for key maps that change the layout (GPT-2's Conv1D weights): a StoredTensor goes
    wherever those tensor methods and `shape` are all that is used.
    """

    def __init__(
        self,
        shape,
        dtype: torch.dtype,
        read: Callable[[], Tensor] | None = None,
        file: tuple[Path, int] | None = None,
    ):
        # Exactly one source: read() returns the values; file is (path, byte offset) of raw little-endian data.
        self.shape = torch.Size(shape)
        self.dtype = dtype
        self._read = read
        self._file = file

    @classmethod
    def of(cls, tensor: Tensor) -> StoredTensor:
        """Wrap a tensor that is already at hand (or memory-mapped)."""
        return cls(tensor.shape, tensor.dtype, read=lambda: tensor)

    def load(self) -> Tensor:
        """Return the values as a new tensor (or the wrapped one)."""
        if self._read is not None:
            return self._read()
        tensor = torch.empty(self.shape, dtype=self.dtype)
        self.copy_to(tensor)
        return tensor

    def copy_to(self, target: Tensor) -> None:
        """Copy the values into target, a tensor of the same shape in any layout, dtype or device."""
        if self._file is None:
            target.copy_(self.load())
            return
        if target.numel() == 0:
            return
        path, offset = self._file
        try:
            with open(path, "rb", buffering=0) as file:
                file.seek(offset)
                if target.is_contiguous() and target.dtype == self.dtype and target.device.type == "cpu":
                    _read_exactly(file, target.detach().reshape(-1).view(torch.uint8))
                    return
                rows = target.reshape(1, -1) if target.dim() == 0 else target
                row_bytes = rows[0].numel() * self.dtype.itemsize
                step = max(1, _BLOCK_BYTES // max(row_bytes, 1))
                block = torch.empty(min(step, len(rows)) * row_bytes, dtype=torch.uint8)
                for start in range(0, len(rows), step):
                    part = rows[start : start + step]
                    data = block[: len(part) * row_bytes]
                    _read_exactly(file, data)
                    part.copy_(data.view(self.dtype).view(part.shape))
        except OSError as error:
            raise CheckpointError(f"cannot read weights from {path}: {error}") from error

    def t(self) -> StoredTensor:
        return self._derive(Tensor.t)

    def chunk(self, chunks: int, dim: int = 0) -> tuple[StoredTensor, ...]:
        count = len(self._meta().chunk(chunks, dim))
        return tuple(self._derive(lambda x, i=i: x.chunk(chunks, dim)[i]) for i in range(count))

    def _meta(self) -> Tensor:
        return torch.empty(self.shape, dtype=self.dtype, device="meta")

    def _derive(self, view: Callable[[Tensor], Tensor]) -> StoredTensor:
        # The meta device works out the result's shape and dtype without any data.
        result = view(self._meta())
        return StoredTensor(result.shape, result.dtype, read=lambda: view(self.load()))

    def __repr__(self) -> str:
        return f"StoredTensor(shape={tuple(self.shape)}, dtype={self.dtype})"


_BLOCK_BYTES = 1 << 20  # what a copy that changes layout or dtype reads at a time


def _read_exactly(file, data: Tensor) -> None:
    view, done = memoryview(data.numpy()), 0
    while done < len(view):
        count = file.readinto(view[done:])
        if not count:
            raise OSError("the file ends inside the tensor data; was it changed while loading?")
        done += count


def copy_weight(target: Tensor, value: Tensor | StoredTensor) -> None:
    """Copy a stored or in-memory tensor into target, keeping target's storage layout."""
    if isinstance(value, StoredTensor):
        value.copy_to(target)
    else:
        target.copy_(value)


def _read_file(path: Path) -> dict[str, StoredTensor]:
    try:
        if path.suffix == ".safetensors":
            return _index_safetensors(path)
        # Pickled checkpoints may carry code; weights_only refuses anything but tensors and plain containers.
        # Zip-format files (torch.save's default) are memory-mapped, so that tensors are read as they are copied.
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as error:
        raise CheckpointError(f"cannot read weights from {path}: {error}") from error
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(state).__name__})")
    strays = [key for key, value in state.items() if not isinstance(value, Tensor)]
    if strays:
        raise CheckpointError(f"{path} holds values that are not tensors under {strays[:12]}")
    return {key: StoredTensor.of(tensor) for key, tensor in state.items()}


# safetensors dtype names -> torch dtypes (https://github.com/huggingface/safetensors, format section).
_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U64": torch.uint64,
    "U32": torch.uint32,
    "U16": torch.uint16,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _index_safetensors(path: Path) -> dict[str, StoredTensor]:
    """Read a safetensors header (8-byte little-endian length, JSON, then the data) and check it against the file.

    The data is read tensor by tensor with plain reads rather than through a memory map, whose pages would
    count towards the process's resident memory until the whole file were unmapped.
    """
    size = path.stat().st_size
    with open(path, "rb") as file:
        length = int.from_bytes(file.read(8), "little")
        if size < 8 or length > size - 8:
            raise ValueError(f"the header length ({length} bytes) does not fit a {size}-byte file")
        header = json.loads(file.read(length))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    start, state = 8 + length, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
            shape, (begin, end) = [int(n) for n in info["shape"]], info["data_offsets"]
        except (TypeError, KeyError, ValueError) as error:
            raise ValueError(f"the header entry of {name} is malformed: {info}") from error
        if dtype is None:
            raise ValueError(f"{name} has dtype {info['dtype']}, which is not supported")
        nbytes = math.prod(shape) * dtype.itemsize
        if min(shape, default=0) < 0 or not 0 <= begin <= end <= size - start or end - begin != nbytes:
            raise ValueError(f"{name}: data offsets {info['data_offsets']} do not fit its shape and dtype")
        state[name] = StoredTensor(shape, dtype, file=(path, start + begin))
    return state


def load_into(
    model: nn.Module,
    state: Mapping[str, StoredTensor | Tensor],
    key_map: KeyMap,
    source: str,
    optional=(),
) -> None:
    """Rename upstream weights with key_map and copy them into model, or raise listing every misfit.

    Tensors are read and copied one at a time into the existing parameters and buffers, which keep their
    storage layout (nn/linear.py). Absent optional parameters whose initialisation skip_init left out are
    initialised now, as their modules would have done.

    Args:
        model: The freshly built model (under skip_init or not).
        state: Upstream tensors by upstream name (read_weights' StoredTensors or tensors).
        key_map: Upstream <-> our names.
        source: The checkpoint folder, for messages.
        optional: Our parameter names that may be absent (tied heads).
    """
    ours = model.state_dict(keep_vars=True)
    renamed, unexpected = {}, []
    for key, tensor in state.items():
        if key_map.ignored(key):
            continue
        name = key_map.to_ours(key)
        (unexpected.append(key) if name is None or name not in ours else renamed.__setitem__(name, tensor))
    missing = [key_map.to_upstream(n) or n for n in ours if n not in renamed and n not in optional]
    shapes = [
        f"{key_map.to_upstream(n) or n}: checkpoint {tuple(t.shape)}, config expects {tuple(ours[n].shape)}"
        for n, t in renamed.items()
        if tuple(t.shape) != tuple(ours[n].shape)
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(_misfit_report(source, missing, unexpected, shapes))
    with torch.no_grad():
        for name, tensor in renamed.items():
            copy_weight(ours[name], tensor)
        loaded = {id(ours[name]) for name in renamed}  # a tied parameter is loaded under either name
        for tensor in ours.values():
            for initialise, args, kwargs in vars(tensor).pop(_DEFERRED, ()):
                if id(tensor) not in loaded:
                    initialise(tensor, *args, **kwargs)


def _misfit_report(source: str, missing: list, unexpected: list, shapes: list) -> str:
    def section(title: str, items: list) -> str:
        shown = "\n    ".join(items[:12]) + (
            f"\n    ... and {len(items) - 12} more" if len(items) > 12 else ""
        )
        return f"\n  {title} ({len(items)}):\n    {shown}" if items else ""

    return (
        f"weights in {source} do not fit its config.json"
        + section("missing from the checkpoint", missing)
        + section("in the checkpoint but not in the model", unexpected)
        + section("shape mismatch", shapes)
    )


def save_weights(model: nn.Module, key_map: KeyMap, path: Path, skip=()) -> None:
    """Write the model's weights under upstream names to a safetensors file (shared tensors written once)."""
    from safetensors.torch import save_file

    state = {}
    for name, tensor in model.state_dict().items():
        if name in skip:
            continue
        upstream = key_map.to_upstream(name)
        if upstream is None:
            raise CheckpointError(f"no upstream name for parameter {name}; the key map is incomplete")
        state[upstream] = tensor.detach().contiguous().cpu()
    save_file(state, str(path), metadata={"format": "pt"})


_DEFERRED = "_speechseq_deferred_init"  # attribute of a parameter: the initialisers skip_init left out


@contextmanager
def skip_init():
    """Build modules without torch.nn.init's random initialisation, for weights that load_into fills next.

    Linear, Conv and Embedding layers come out with their weights as torch.empty left them, which saves the
    time of drawing random numbers for weights that are overwritten anyway. Each left-out call is noted on its
    parameter: load_into runs it for a parameter that the checkpoint may lack (`optional`) and does lack, and
    drops the note for every other. Tensors made otherwise (torch.zeros, computed tables and buffers) are
    unaffected, and so are other threads: a torch function mode is local to the thread that enters it.
    """
    with _SkipInit():
        yield


class _SkipInit(TorchFunctionMode):
    # The initialisers that torch.nn.init routes through torch function modes: what Linear, Conv* and Embedding
    # call. The others (ones_, zeros_ of the norms) are cheap and run as usual.
    SKIPPED = frozenset({nn.init.uniform_, nn.init.normal_, nn.init.constant_, nn.init.kaiming_uniform_})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func not in self.SKIPPED:
            return func(*args, **kwargs)
        tensor, args = (kwargs.pop("tensor"), args) if "tensor" in kwargs else (args[0], args[1:])
        vars(tensor).setdefault(_DEFERRED, []).append((func, args, kwargs))
        return tensor
