"""The native kernels, built once with the system's C compiler and loaded with ctypes: few-row products
(few_rows.c), a whole decoding step of a decoder stack (decoder_step.c, driven by nn/native_decoder.py) and
the fbank steps around the FFT (audio/fbank.c, driven by audio/fbank.py).

A decoding step multiplies 1 to 8 rows per sequence (greedy, beams) by every weight matrix, where MKL reads
a weight about once per two rows and pays more per call than the product takes; `few_rows.c` reads each
weight once for all rows. The library is compiled on first use into the user's cache folder
(`$SPEECHSEQ_CACHE`, else `$XDG_CACHE_HOME/speechseq`, else `~/.cache/speechseq`), named by a hash of
the source and flags, and reused by later processes. Without a C compiler, on a CPU without AVX2 and FMA,
or with `SPEECHSEQ_NATIVE=0`, `few_rows_linear` returns None and callers use F.linear.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

_HERE = Path(__file__).parent
FLAGS = ("-O3", "-mavx2", "-mfma", "-pthread", "-fPIC")
# Each source with the flags it adds. fbank.c must round every product and sum on its own, as numpy does,
# so the compiler may not fuse a * b + c into one FMA there; elsewhere it may.
SOURCES = {
    _HERE / "few_rows.c": (),
    _HERE / "decoder_step.c": (),
    _HERE.parent / "audio" / "fbank.c": ("-ffp-contract=off",),
}
HEADER = _HERE / "native.h"
MAX_ROWS = 48  # from about 40 rows MKL's blocked products are as fast (README, Performance)
# Products run on torch.get_num_threads() threads (few_rows.c's own, which spin 0.2 ms between products)
# from a weight of 2**16 elements or 2**20 multiply-adds; smaller ones on the calling thread alone.
THREADED_WEIGHT, THREADED_WORK = 1 << 16, 1 << 20

_kernel = None  # the library's product entry point, once loaded
_step = None  # its decoder-step entry point
_fbank = None  # its fbank entry points: (frames, mel)
_threads = torch.get_num_threads
_tried = False


def _cache_folder() -> Path:
    if os.environ.get("SPEECHSEQ_CACHE"):
        return Path(os.environ["SPEECHSEQ_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "speechseq"


def _cpu_supported() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    except (AttributeError, RuntimeError):
        return False


def _build() -> Path:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler (cc, gcc or $CC) found")
    source = b"".join(path.read_bytes() for path in (*SOURCES, HEADER))
    flags = " ".join(FLAGS) + "".join(f" {path.name}: {' '.join(extra)}" for path, extra in SOURCES.items())
    digest = hashlib.sha256(source + flags.encode() + compiler.encode()).hexdigest()[:16]
    target = _cache_folder() / f"speechseq-native-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Compile beside the target and rename, so that concurrent processes never load a half-written file.
    with tempfile.TemporaryDirectory(dir=target.parent, suffix=".partial") as work:
        objects = [str(Path(work) / f"{path.stem}.o") for path in SOURCES]
        commands = [
            [compiler, *FLAGS, *extra, "-c", str(path), "-o", built]
            for (path, extra), built in zip(SOURCES.items(), objects, strict=True)
        ]
        partial = str(Path(work) / "library.so")
        commands.append([compiler, "-shared", "-pthread", *objects, "-o", partial, "-lm"])
        for command in commands:
            result = subprocess.run(command, capture_output=True, text=True, timeout=120)
            if result.returncode != 0:
                raise OSError(f"{compiler} failed on the native sources: {result.stderr.strip()[-500:]}")
        os.replace(partial, target)
    return target


def _load():
    """The product entry point, building the library on the first call; None where it cannot be used."""
    global _kernel, _step, _fbank, _tried
    if _tried:
        return _kernel
    _tried = True
    if os.environ.get("SPEECHSEQ_NATIVE", "1") == "0" or not _cpu_supported():
        return None
    try:
        library = ctypes.CDLL(str(_build()))
        kernel, step = library.speechseq_few_rows_linear, library.speechseq_decoder_step
        frames, mel = library.speechseq_fbank_frames, library.speechseq_fbank_mel
    except (OSError, subprocess.SubprocessError) as error:
        logger.info("native library unavailable, using torch and numpy instead: %s", error)
        return None
    pointer, size, integer = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    kernel.argtypes = [pointer, size, size, pointer, size, integer, pointer, pointer, integer]
    kernel.restype = None
    step.argtypes = [pointer, pointer, pointer, size, pointer, size, integer]
    step.restype = None
    frames.argtypes = [pointer, integer, size, pointer, ctypes.c_double, pointer, pointer]
    frames.restype = None
    mel.argtypes = [pointer, size, pointer, pointer, pointer, pointer, size, pointer, size]
    mel.restype = None
    _kernel, _step, _fbank = kernel, step, (frames, mel)
    return kernel


def available() -> bool:
    return _load() is not None


def fbank_kernels() -> tuple | None:
    """The fbank entry points (speechseq_fbank_frames, speechseq_fbank_mel), or None without the library."""
    _load()
    return _fbank


def few_rows_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor | None:
    """x @ weight.T + bias through the kernel, or None where it does not apply (callers use F.linear).

    It applies to CPU float32 inference (no gradient wanted) of at most MAX_ROWS rows, with the weight
    stored (out, in) or (in, out) without gaps and the bias, if any, contiguous.
    """
    float32 = torch.float32
    if x.dtype is not float32 or weight.dtype is not float32 or not (x.is_cpu and weight.is_cpu):
        return None
    if weight.ndim != 2:
        return None
    out_features, in_features = weight.shape
    if x.shape[-1] != in_features or in_features == 0:
        return None
    rows = x.numel() // in_features
    if rows == 0 or rows > MAX_ROWS:
        return None
    if torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    ):
        return None
    if bias is not None and (
        bias.dtype is not float32
        or not bias.is_cpu
        or bias.shape != (out_features,)
        or not bias.is_contiguous()
    ):
        return None
    if weight.is_contiguous():
        transposed = 0
    elif weight.t().is_contiguous():
        transposed = 1
    else:
        return None
    kernel = _kernel if _tried else _load()
    if kernel is None:
        return None
    x = x.contiguous()
    shape = list(x.shape)
    shape[-1] = out_features
    out = torch.empty(shape, dtype=float32)
    size = out_features * in_features
    threads = _threads() if size >= THREADED_WEIGHT or rows * size >= THREADED_WORK else 1
    kernel(
        x.data_ptr(),
        rows,
        in_features,
        weight.data_ptr(),
        out_features,
        transposed,
        None if bias is None else bias.data_ptr(),
        out.data_ptr(),
        threads,
    )
    return out
