"""The few-row product kernel (nn/native.py, nn/few_rows.c): F.linear's results, and F.linear where it cannot run."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from speechseq.nn import native
from speechseq.nn.linear import Linear

needs_kernel = pytest.mark.skipif(not native.available(), reason="few-row kernel not built (no cc or AVX2)")


def _weight(out_features: int, in_features: int, transposed: bool) -> torch.Tensor:
    weight = torch.randn(out_features, in_features) / in_features**0.5
    return weight.t().contiguous().t() if transposed else weight


@needs_kernel
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize(
    "shape", [(1, 1), (3, 5), (16, 16), (17, 9), (64, 64), (100, 37), (130, 258), (2048, 256), (256, 2048)]
)
def test_matches_f_linear(shape, transposed):
    torch.manual_seed(0)
    weight = _weight(*shape, transposed)
    bias = torch.randn(shape[0])
    with torch.inference_mode():
        for rows in (1, 2, 3, 5, 6, 7, 8, 13, native.MAX_ROWS):
            x = torch.randn(rows, 1, shape[1])
            for b in (bias, None):
                out = native.few_rows_linear(x, weight, b)
                assert out is not None and out.shape == (rows, 1, shape[0]) and out.dtype == torch.float32
                torch.testing.assert_close(out, F.linear(x, weight, b), rtol=1e-5, atol=1e-5)


@needs_kernel
def test_every_thread_count_gives_the_same_values(monkeypatch):
    torch.manual_seed(0)
    weight, bias, x = torch.randn(1003, 80), torch.randn(1003), torch.randn(5, 80)
    monkeypatch.setattr(native, "THREADED_WEIGHT", 1)
    results = []
    with torch.inference_mode():
        for threads in (1, 2, 3, 7):
            monkeypatch.setattr(native, "_threads", lambda threads=threads: threads)
            results.append(native.few_rows_linear(x, weight, bias))
    for out in results:
        torch.testing.assert_close(out, F.linear(x, weight, bias), rtol=1e-5, atol=1e-5)
        assert torch.equal(out, results[0])  # each column is summed the same way on any thread


def test_falls_back_where_it_does_not_apply():
    weight, bias = torch.randn(8, 4), torch.randn(8)
    x = torch.randn(2, 4)
    with torch.inference_mode():
        assert native.few_rows_linear(torch.randn(native.MAX_ROWS + 1, 4), weight, bias) is None
        assert native.few_rows_linear(x.double(), weight.double(), bias.double()) is None
        assert native.few_rows_linear(x, torch.randn(8, 8)[:, ::2], bias) is None  # gaps between columns
        assert native.few_rows_linear(x, weight, torch.randn(9)) is None  # F.linear names the mismatch
        assert native.few_rows_linear(torch.randn(2, 5), weight, bias) is None
        assert native.few_rows_linear(torch.randn(0, 4), weight, bias) is None
    wants_grad = torch.randn(2, 4, requires_grad=True)
    assert native.few_rows_linear(wants_grad, weight, bias) is None


def test_linear_layer_matches_and_trains():
    torch.manual_seed(0)
    layer = Linear(32, 64)
    x = torch.randn(1, 3, 32)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
    out = layer(x)  # gradients wanted: F.linear, with autograd
    out.sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.shape == (64, 32)
    with pytest.raises(RuntimeError):
        layer(torch.randn(1, 3, 31))  # F.linear's own shape error, not a read past the input


def test_bad_bias_still_gets_f_linear_error():
    layer = Linear(4, 8)
    layer.bias = torch.nn.Parameter(torch.randn(9))
    with torch.inference_mode(), pytest.raises(RuntimeError):
        layer(torch.randn(1, 4))


def _child_product(queue, x, weight) -> None:
    # Only the kernel runs here: torch's own OpenMP products would hang in a forked child.
    with torch.inference_mode():
        queue.put(native.few_rows_linear(x, weight, None).tolist())


@needs_kernel
@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_forked_child_can_use_the_threads(monkeypatch):
    # The parent's worker threads do not exist in a forked child; the kernel must start its own there
    # (OpenMP's pool hangs in that case).
    monkeypatch.setattr(native, "_threads", lambda: 2)
    torch.manual_seed(0)
    weight, x = torch.randn(2048, 256), torch.randn(5, 256)
    with torch.inference_mode():
        expected = native.few_rows_linear(x, weight, None).tolist()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_product, args=(queue, x, weight))
    child.start()
    try:
        got = queue.get(timeout=60)  # before join: the child exits once its result has left the pipe
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    assert got == expected and child.exitcode == 0


def _run(code: str, **env: str) -> str:
    environment = {**os.environ, **env}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


PROBE = (
    "import torch; from speechseq.nn import native; from speechseq.nn.linear import Linear;"
    "layer = Linear(16, 64); x = torch.randn(1, 16);"
    "torch.testing.assert_close(layer(x).detach(), x @ layer.weight.T + layer.bias);"
    "print(native.available(), layer.weight.is_contiguous())"
)


def test_disabled_by_environment_and_layout_follows(tmp_path):
    # Without the kernel, wide layers keep MKL's faster one-row layout: the weight stored transposed.
    assert _run(PROBE, SPEECHSEQ_NATIVE="0", SPEECHSEQ_CACHE=str(tmp_path)) == "False False"
    assert list(tmp_path.iterdir()) == []


def test_builds_wherever_a_compiler_and_avx2_are_found():
    # A source that no longer compiles would otherwise only turn every native test into a skip.
    import shutil

    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if os.environ.get("SPEECHSEQ_NATIVE") != "0" and native._cpu_supported() and compiler:
        assert native.available() and native.fbank_kernels() is not None
    else:
        pytest.skip("no C compiler or no AVX2 here, or SPEECHSEQ_NATIVE=0")


def test_failed_build_falls_back_to_f_linear(tmp_path):
    assert _run(PROBE, CC="false", SPEECHSEQ_CACHE=str(tmp_path)) == "False False"
    assert list(tmp_path.iterdir()) == []  # no partial library left behind


@needs_kernel
def test_built_once_into_the_cache(tmp_path):
    assert _run(PROBE, SPEECHSEQ_CACHE=str(tmp_path)) == "True True"
    built = sorted(Path(tmp_path).iterdir())
    assert len(built) == 1 and built[0].name.startswith("speechseq-native-") and built[0].suffix == ".so"
    stamp = built[0].stat().st_mtime_ns
    assert _run(PROBE, SPEECHSEQ_CACHE=str(tmp_path)) == "True True"
    assert sorted(Path(tmp_path).iterdir()) == built and built[0].stat().st_mtime_ns == stamp
