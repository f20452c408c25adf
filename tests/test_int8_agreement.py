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


def test_int8_in_some_layers_only(tmp_path):
    """The shared layer is one module run once per layer: the simulation rounds in the chosen layers only,
    so no layers is the fp32 model and every layer (the E -> H map, -1, included) the whole-model one."""
    from tests.conftest import TINY

    import openalbert

    torch.manual_seed(0)
    config = openalbert.AlbertConfig(
        **TINY | {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    )
    openalbert.AlbertForMaskedLM(config).save_pretrained(tmp_path)
    ids = torch.randint(5, TINY["vocab_size"], (2, 12))
    ALL = frozenset(range(-1, 8))  # the E -> H map, then 4 layers x 2 inner layers: 8 AlbertLayer calls
    with torch.no_grad():
        fp32 = int8_agreement.M.from_pretrained(tmp_path)(ids).logits
        logits = {
            layers: int8_agreement.simulated(str(tmp_path), True, "tensor", layers=layers)(ids).logits
            for layers in (frozenset(), frozenset({3}), ALL)
        }
        whole = int8_agreement.simulated(str(tmp_path), True, "tensor")(ids).logits
    torch.testing.assert_close(logits[frozenset()], fp32, atol=1e-5, rtol=0)  # F.linear vs packed GEMMs
    assert torch.equal(logits[ALL], whole)
    one, none = logits[frozenset({3})], logits[frozenset()]  # the same F.linear path but for one layer
    assert 0 < (one - none).abs().max() < (whole - none).abs().max()
