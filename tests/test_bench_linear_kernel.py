"""benchmarks/bench_linear_kernel.py on a tiny model: both paths timed, the same outputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from tests.conftest import TINY

import openalbert
from openalbert import cpu_kernels

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not cpu_kernels.linear_available(), reason="the AVX2 linear kernel does not run here")
def test_linear_kernel_bench(monkeypatch, tmp_path):
    path = ROOT / "benchmarks" / "bench_linear_kernel.py"
    spec = importlib.util.spec_from_file_location("bench_linear_kernel", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    tiny = openalbert.AlbertConfig(**(TINY | {"intermediate_size": 48, "max_position_embeddings": 512}))
    monkeypatch.setattr(bench, "config_for", lambda preset: tiny)
    out = tmp_path / "result.json"
    bench.main(["--rounds", "2", "--gemm-rows", "7", "--output", str(out)])
    result = json.loads(out.read_text())
    assert set(result["forward"]) == {"b1x16", "b1x128", "b1x512", "b8x128", "var64"}
    assert set(result["gemm"]) == {"7x32x96", "7x32x32", "7x32x48", "7x48x32"}
    for row in [*result["forward"].values(), *result["gemm"].values()]:
        assert row["kernel_s"] > 0 and row["without_s"] > 0 and row["max_abs_diff"] < 1e-4
    assert cpu_kernels.linear_available is bench._REAL_AVAILABLE  # switched back
