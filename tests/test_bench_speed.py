"""The speed benchmark harness: a tiny end-to-end run into JSON, and the FLOP count against a hand count."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

import openalbert
from openalbert.checkpoint import DEFAULT_MODEL_DIR

pytest.importorskip("transformers")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_speed.py"
_spec = importlib.util.spec_from_file_location("bench_speed", BENCH)
bench_speed = importlib.util.module_from_spec(_spec)
sys.modules["bench_speed"] = bench_speed  # dataclasses look their module up while the file runs
_spec.loader.exec_module(bench_speed)

ALWAYS = ("transformers fp32", "transformers bf16", "openalbert fp32", "openalbert bf16")


def _onnx_ready() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        import openalbert.fast.onnx  # noqa: F401
    except ImportError:
        return False
    return True


def test_flops_match_a_hand_count():
    # E=4, H=8, I=16, 2 layers of 2 inner layers each = 4 layer runs; batch 2 x 3 tokens = 6 tokens
    config = openalbert.AlbertConfig(
        vocab_size=50,
        embedding_size=4,
        hidden_size=8,
        num_hidden_layers=2,
        inner_group_num=2,
        num_attention_heads=2,
        intermediate_size=16,
    )
    flops = bench_speed.albert_flops(config, batch=2, seq_len=3)
    expected = {
        "embedding_projection": 2 * 6 * 4 * 8,  # 384
        "qkv_projections": 4 * 3 * (2 * 6 * 8 * 8),  # 9216
        "attention_scores": 4 * (2 * 2 * 3 * 3 * 8),  # 1152: per sequence T x T x H multiply-adds
        "attention_context": 4 * (2 * 2 * 3 * 3 * 8),  # 1152
        "attention_output": 4 * (2 * 6 * 8 * 8),  # 3072
        "feed_forward": 4 * (2 * 6 * 8 * 16 * 2),  # 12288: up and down
        "pooler": 2 * 2 * 8 * 8,  # 256: the [CLS] vector of each sequence
    }
    assert {k: v for k, v in flops.items() if k != "total"} == expected
    assert flops["total"] == 27520
    # albert-base-v2 at batch 1 x 128: 22.37 GFLOP, almost all of it in the 12 layer runs
    assert bench_speed.albert_flops(openalbert.AlbertConfig(), 1, 128)["total"] == 22_373_597_184


def test_lognormal_lengths_are_seeded_and_clipped():
    lengths = bench_speed.lognormal_lengths(256, median=50, lo=8, hi=128, sigma=0.5, seed=0)
    assert lengths == bench_speed.lognormal_lengths(256, median=50, lo=8, hi=128, sigma=0.5, seed=0)
    assert min(lengths) >= 8 and max(lengths) == 128  # a few draws reach the clip
    assert 40 <= sorted(lengths)[128] <= 60


def test_tiny_quick_run_writes_every_workload_system_and_gate(tmp_path, capsys):
    out = tmp_path / "speed.json"
    argv = ["--tiny", "--quick", "--threads", "1", "--model-dir", str(tmp_path / "model")]
    argv += ["--text", str(DEFAULT_MODEL_DIR / "README.md"), "--gate-windows", "4", "--floor"]
    bench_speed.main([*argv, "--output", str(out)])
    result = json.loads(out.read_text())

    assert {"cpu", "logical_cpus", "torch", "transformers", "onnxruntime"} <= set(result["machine"])
    assert {"avx512_bf16", "avx512_vnni"} <= set(result["machine"]["flags"])
    workloads = {w["name"] for w in result["workloads"]}
    assert workloads == {"b1x16", "b1x128", "b1x512", "b8x128", "var64"}
    var = next(w for w in result["workloads"] if w["name"] == "var64")
    assert var["unit"] == "tokens/s" and 0 < var["padding_fraction"] < 1
    assert var["lengths"][:3] != sorted(var["lengths"])[:3]  # arrival order, not sorted

    systems = result["systems"]
    assert all(systems[name]["status"] == "ok" for name in ALWAYS)
    assert systems["transformers fp32"]["info"]["attn_implementation"] == "sdpa"
    for name in ("onnxruntime fp32", "onnxruntime int8"):
        assert systems[name]["status"] == ("ok" if _onnx_ready() else "skipped")
    for name, entry in systems.items():
        if entry["status"] != "ok":
            assert entry["note"] and any(name in note for note in result["notes"])

    ok = [name for name, entry in systems.items() if entry["status"] == "ok"]
    rows = result["measurements"]
    for workload in workloads:
        measured = {r["system"]: r for r in rows if r["workload"] == workload}
        assert set(measured) == set(ok)
        for r in measured.values():
            assert 0 < r["p10"] <= r["median"] <= r["p90"], r
            assert r["gate"]["tokens"] > 0 and r["gate"]["mean_cosine"] > 0.9
        assert result["ratios"][workload]["transformers fp32"] == 1.0

    hidden = result["gates"]["hidden_state"]
    assert set(hidden) == set(ok)
    for name in ok:
        assert hidden[name]["pass"], (name, hidden[name])
        if systems[name]["precision"] == "fp32":
            assert hidden[name]["max_abs_diff"] < 1e-3

    fill = result["gates"]["fill_mask"]
    assert fill["windows"] == 4 and fill["masked_tokens"] > 0
    assert fill["systems"]["transformers fp32"]["agreement"] == 1.0
    for name in ("transformers bf16", "openalbert bf16"):
        assert 0.5 < fill["systems"][name]["agreement"] <= 1.0

    training = [r for r in rows if r["workload"] == "train-mlm-8x128"]
    assert {r["system"] for r in training} == set(bench_speed.TRAIN_VARIANTS)
    for r in training:
        assert r["median"] > 0 and r["gate"]["grad_cosine"] > 0.99, r
    fp32 = {r["system"]: r["gate"] for r in training if r["precision"] == "fp32"}
    assert fp32["openalbert fp32"]["loss_diff"] < 1e-4 and fp32["openalbert fp32"]["pass"]

    floor = result["floor"]
    assert floor["fp32"]["gemm_gflops"] > 0 and floor["bf16"]["floor_ms_1x128"] > 0
    assert floor["model_flops_1x128"]["total"] == result["model"]["flops_1x128"]
    # Forward and backward of 8 x 128 plus the MLM head: more than three 8 x 128 forwards of AlbertModel.
    assert floor["training_flops_8x128"] > 3 * 8 * floor["model_flops_1x128"]["total"]
    trained = floor["bf16"]["measured_over_floor_train_8x128"]
    assert set(trained) == {"transformers bf16 autocast", "openalbert bf16 autocast"}
    assert all(ratio > 0 for ratio in trained.values())

    table = capsys.readouterr().out
    assert "| system | precision |" in table and "| openalbert fp32 |" in table


def test_rounds_fit_the_budget():
    rounds = bench_speed.Rounds(repeats=20, warmup=3, budget_s=60.0, min_repeats=5)
    assert rounds.timed(0.01) == 20  # fast workloads get every round
    assert rounds.timed(6.0) == 10
    assert rounds.timed(40.0) == 5  # never below min_repeats
    calls = []
    assert rounds.warm(lambda: calls.append(1), first_s=0.001) < 1.0
    assert len(calls) == 2  # warmup 3 = the first (gate) pass + 2
    calls.clear()
    rounds.warm(lambda: calls.append(1), first_s=30.0)
    assert calls == []  # a pass past a quarter of the budget has warmed up within itself


def test_text_windows_and_masks_on_real_text():
    tokenizer = openalbert.AlbertTokenizer.from_pretrained(DEFAULT_MODEL_DIR)
    windows = bench_speed.text_windows(tokenizer, [DEFAULT_MODEL_DIR / "README.md"], 128, 3)
    assert len(windows) == 3 and all(len(w) == 126 for w in windows)
    [(batch, chosen, targets)] = bench_speed.masked_batches(tokenizer, windows, 0.15, seed=0)
    ids = batch.tensors["input_ids"]
    assert ids.shape == (3, 128) and (ids[:, 0] == tokenizer.cls_token_id).all()
    assert chosen.sum(1).tolist() == [19, 19, 19]  # round(0.15 * 126), never [CLS] or [SEP]
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    assert (ids[chosen] == tokenizer.mask_token_id).all()
    assert targets.tolist() == [t for w, c in zip(windows, chosen) for t, m in zip(w, c[1:-1]) if m]
