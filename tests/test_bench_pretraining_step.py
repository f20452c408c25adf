"""benchmarks/bench_pretraining_step.py on a tiny model: every variant timed, one loss three ways."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import openalbert

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_pretraining_step", ROOT / "benchmarks" / "bench_pretraining_step.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mlm_only", [False, True])
def test_pretraining_step_bench(monkeypatch, tmp_path, mlm_only):
    bench = _bench()
    tiny = openalbert.AlbertConfig(
        vocab_size=120, embedding_size=16, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, position_embedding_type="relative_key",
    )  # fmt: skip
    monkeypatch.setattr(bench, "config_for", lambda preset: tiny)
    out = tmp_path / "result.json"
    args = [
        "--batch",
        "3",
        "--seq-len",
        "24",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--output",
        str(out),
    ]
    result = bench.main(args + (["--mlm-only"] if mlm_only else []))
    assert set(result["median_ms"]) == {"objective", "full last layer", "model forward"}
    assert all(ms > 0 for ms in result["median_ms"].values())
    assert all(len(v) == 2 for v in result["all_ms"].values())
    assert result["max_loss_diff"] < 1e-5
    assert json.loads(out.read_text())["median_ms"] == result["median_ms"]
