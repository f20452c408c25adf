"""benchmarks/bench_linear_kernel.py on tiny models, for both kernels: both paths timed, the same outputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from tests.conftest import TINY

import openalbert
from openalbert import cpu_kernels, packed_attention

ROOT = Path(__file__).resolve().parents[1]
needs_avx2 = pytest.mark.skipif(not cpu_kernels.linear_available(), reason="the AVX2 kernels do not run here")


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_linear_kernel", ROOT / "benchmarks" / "bench_linear_kernel.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@needs_avx2
def test_linear_kernel_bench(monkeypatch, tmp_path):
    bench = _bench()
    tiny = openalbert.AlbertConfig(**(TINY | {"intermediate_size": 48, "max_position_embeddings": 512}))
    monkeypatch.setattr(bench, "config_for", lambda preset: tiny)
    out = tmp_path / "result.json"
    bench.main(["--rounds", "2", "--gemm-rows", "7", "--output", str(out)])
    result = json.loads(out.read_text())
    assert set(result["forward"]) == {"b1x16", "b1x128", "b1x512", "b8x128", "var64"}
    assert set(result["gemm"]) == {"7x32x96", "7x32x32", "7x32x48", "7x48x32"}
    for row in [*result["forward"].values(), *result["gemm"].values()]:
        assert row["kernel_s"] > 0 and row["without_s"] > 0 and row["max_abs_diff"] < 1e-4
    assert cpu_kernels.linear_available is bench._REAL["linear"]  # switched back


@needs_avx2
def test_attention_kernel_bench(monkeypatch, tmp_path):
    """--kernel attention on a model directory: heads of 16 (the kernel's unit), relative positions."""
    bench = _bench()
    small = TINY | {"num_attention_heads": 2, "intermediate_size": 48, "max_position_embeddings": 512}
    config = openalbert.AlbertConfig(**small, position_embedding_type="relative_key")
    openalbert.AlbertModel(config).save_pretrained(tmp_path / "model")
    calls = []
    real = packed_attention.packed_attention
    monkeypatch.setattr(
        packed_attention, "packed_attention", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    out = tmp_path / "result.json"
    bench.main(
        ["--kernel", "attention", "--preset", str(tmp_path / "model"), "--rounds", "2", "--output", str(out)]
    )
    result = json.loads(out.read_text())
    assert result["kernel_compared"] == "attention" and "gemm" not in result
    for row in result["forward"].values():
        assert row["kernel_s"] > 0 and row["without_s"] > 0 and row["max_abs_diff"] < 1e-4
    assert calls and packed_attention.available is bench._REAL["attention"]  # it ran; switched back
