"""benchmarks/int8_agreement.py: its simulated int8 rounding is what the shipped kernels round, and a
small run writes every variant's agreement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from openalbert.fast.quantize import weight_levels

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
REAL_TEXT = Path("/usr/share/common-licenses/GPL-3")
sys.path.insert(0, str(BENCHMARKS))
int8_agreement = pytest.importorskip("int8_agreement")  # needs transformers, as bench_speed does


def test_simulated_rounding():
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(8, 16, generator=gen)
    rounded = int8_agreement.int8_weight(weight)
    levels = weight_levels()  # 127, or 63 on CPUs without VNNI
    step = weight.abs().amax(dim=1, keepdim=True) / levels
    assert ((rounded - weight).abs() <= step / 2 + 1e-6).all()
    assert (rounded / step).round().unique().numel() <= 2 * levels + 1

    x = torch.randn(4, 32, generator=gen) * torch.tensor([1.0, 10.0, 0.1, 100.0])[:, None]
    per_token = int8_agreement.uint8_activation(x, "token")
    per_tensor = int8_agreement.uint8_activation(x, "tensor")
    for row in per_token:
        assert row.unique().numel() <= 256
    # Per token, the small rows keep their precision; per tensor, the 100x row sets everyone's step.
    assert (per_token[2] - x[2]).abs().max() < (per_tensor[2] - x[2]).abs().max()
    assert (per_tensor - x).abs().max() <= (x.max() - x.min()) / 255


def test_simulated_linear_without_rounding_is_the_linear():
    linear = int8_agreement.Linear(16, 8)
    plain = int8_agreement.SimulatedInt8(linear, weights=False, activations=None)
    x = torch.randn(3, 16)
    assert torch.equal(plain(x, "gelu"), linear(x, "gelu"))


@pytest.mark.skipif(not REAL_TEXT.exists(), reason=f"{REAL_TEXT} is missing")
def test_small_run_reports_every_variant(tmp_path):
    out = tmp_path / "agreement.json"
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "int8_agreement.py"), "--heldout", str(REAL_TEXT)]
        + ["--windows", "2", "--no-one-mask", "--threads", "1", "--output", str(out)],
        check=True,
        capture_output=True,
    )
    result = json.loads(out.read_text())
    assert result["masked_tokens"] > 20
    assert set(result["variants"]) == set(int8_agreement.variants("unused"))
    for entry in result["variants"].values():
        assert 0.0 <= entry["agreement"] <= 1.0
        assert entry["flips"] == round((1 - entry["agreement"]) * result["masked_tokens"])
