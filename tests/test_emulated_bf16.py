"""bf16 on CPUs without bf16 arithmetic (AVX2 only, e.g. Zen 3): PyTorch emulates bf16 GEMMs there, 7-200x
slower than fp32 ones, so under bf16 autocast (and for bf16 weights with autograd) the model runs its GEMMs
in fp32 on bf16-rounded operands instead (modeling._Bf16LinearInFp32, _fp32_under_emulated_autocast).

The tests force that path with `cpu_kernels.emulates_bf16` patched, so they run on any CPU, and compare it
with PyTorch's own bf16 (the same patch set to False) and with fp32.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from tests.conftest import TINY
from torch.utils._python_dispatch import TorchDispatchMode

import openalbert
from openalbert import cpu_kernels
from openalbert.modeling import _Bf16LinearInFp32

NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0)
aten = torch.ops.aten
GEMMS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default}


class GemmDtypes(TorchDispatchMode):
    """Records the dtypes of the operands of every GEMM that runs."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, tuple[torch.dtype, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if func in GEMMS or "scaled_dot_product" in str(func):
            dtypes = tuple(a.dtype for a in args if isinstance(a, torch.Tensor))
            self.seen.append((str(func), dtypes))
        return func(*args, **(kwargs or {}))


@pytest.fixture
def emulated(monkeypatch):
    monkeypatch.setattr(cpu_kernels, "emulates_bf16", lambda: True)


def _batch() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(5, TINY["vocab_size"], (3, 13), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    labels = ids.masked_fill(torch.rand(ids.shape, generator=gen) > 0.3, -100).masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}, labels


def _step(model: torch.nn.Module, autocast: bool) -> tuple[float, torch.Tensor]:
    """Loss and the flat gradient of one step (bf16 autocast on or off)."""
    batch, labels = _batch()
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(**batch, labels=labels).loss
    loss.backward()
    return float(loss.detach()), torch.cat(
        [p.grad.float().flatten() for p in model.parameters() if p.grad is not None]
    )


def test_linear_in_fp32_is_a_bf16_gemm_with_fp32_sums():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 48, generator=gen, requires_grad=True)
    weight = torch.randn(40, 48, generator=gen, requires_grad=True)
    bias = torch.randn(40, generator=gen, requires_grad=True)
    out = _Bf16LinearInFp32.apply(x, weight, bias)
    grad = torch.randn(out.shape, generator=gen).to(torch.bfloat16)
    out.backward(grad)
    assert (
        out.dtype == torch.bfloat16 and x.grad.dtype == weight.grad.dtype == bias.grad.dtype == torch.float32
    )

    # The same GEMMs in float64 on the bf16-rounded operands: they differ by the fp32 sums' rounding only.
    x16, w16 = x.detach().bfloat16().double(), weight.detach().bfloat16().double()
    expected = (x16 @ w16.T + bias.detach().double()).bfloat16()
    torch.testing.assert_close(out.float(), expected.float(), rtol=8e-3, atol=1e-5)  # one bf16 rounding
    g = grad.double().reshape(-1, 40)
    torch.testing.assert_close(x.grad.double(), (g @ w16).view(2, 7, 48), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weight.grad.double(), g.T @ x16.reshape(-1, 48), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bias.grad.double(), g.sum(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("position", ["absolute", "relative_key"])
def test_no_bf16_gemm_runs_under_autocast_where_bf16_is_emulated(emulated, position):
    config = openalbert.AlbertConfig(**TINY | NO_DROPOUT, position_embedding_type=position)
    model = openalbert.AlbertForPreTraining(config).train()
    batch, labels = _batch()
    with GemmDtypes() as gemms:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(**batch, labels=labels, sentence_order_label=torch.tensor([0, 1, 0]))
        out.loss.backward()
    assert len(gemms.seen) > 30  # the forward and backward GEMMs of every layer were seen
    # The sentence-order classifier (H -> 2, an nn.Linear as every head's classifier) is the only bf16
    # GEMM left: a forward and two backward ones, a few microseconds each.
    bf16 = [(op, d) for op, d in gemms.seen if torch.bfloat16 in d]
    assert all(op.startswith("aten.addmm") or op.startswith("aten.mm") for op, _ in bf16)
    assert len(bf16) <= 3, bf16


@pytest.mark.parametrize("position", ["absolute", "relative_key"])
def test_autocast_where_emulated_matches_pytorchs_bf16_and_fp32(monkeypatch, position):
    config = openalbert.AlbertConfig(**TINY | NO_DROPOUT, position_embedding_type=position)
    torch.manual_seed(0)
    model = openalbert.AlbertForMaskedLM(config).train()
    fp32_loss, fp32_grad = _step(model, autocast=False)
    monkeypatch.setattr(cpu_kernels, "emulates_bf16", lambda: False)
    torch_loss, torch_grad = _step(model, autocast=True)  # PyTorch's bf16 GEMMs
    monkeypatch.setattr(cpu_kernels, "emulates_bf16", lambda: True)
    loss, grad = _step(model, autocast=True)
    assert abs(loss - torch_loss) < 1e-2 * abs(torch_loss) and abs(loss - fp32_loss) < 2e-2 * abs(fp32_loss)
    # ours is as close to fp32 as PyTorch's bf16 is (it rounds the same operands, and sums in fp32)
    assert F.cosine_similarity(grad, torch_grad, dim=0) > 0.999
    ours, theirs = (F.cosine_similarity(g, fp32_grad, dim=0) for g in (grad, torch_grad))
    assert ours > 0.999 and ours >= theirs - 1e-4


def test_bf16_weights_train_with_fp32_gemms_where_emulated(emulated):
    config = openalbert.AlbertConfig(**TINY | NO_DROPOUT)
    torch.manual_seed(0)
    model = openalbert.AlbertForMaskedLM(config).train()
    _, fp32_grad = _step(model, autocast=False)
    half = copy.deepcopy(model).to(torch.bfloat16)
    with GemmDtypes() as gemms:
        loss, grad = _step(half, autocast=False)
    assert all(p.grad.dtype == torch.bfloat16 for p in half.parameters() if p.grad is not None)
    assert not [d for _, d in gemms.seen if torch.bfloat16 in d]
    assert F.cosine_similarity(grad, fp32_grad, dim=0) > 0.99
