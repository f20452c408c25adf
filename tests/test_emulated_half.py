"""Half precision on CPUs without its arithmetic (bf16 on AVX2-only CPUs such as Zen 3; fp16 on nearly every
x86 CPU): PyTorch emulates those GEMMs, 7-200x slower than fp32 ones, so under half-precision autocast (and
for half-precision weights with autograd) the model runs its GEMMs in fp32 on rounded operands instead
(linear.HalfLinearInFp32, fp32_where_half_is_emulated).

The tests force that path with `cpu_kernels.emulates_bf16`/`emulates_fp16` patched, so they run on any
CPU, and compare it with PyTorch's own half precision (the same patches set to False) and with fp32.
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
from openalbert.linear import HalfLinearInFp32

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
    monkeypatch.setattr(cpu_kernels, "emulates_fp16", lambda: True)


def _emulate(monkeypatch, emulated: bool) -> None:
    for name in ("emulates_bf16", "emulates_fp16"):
        monkeypatch.setattr(cpu_kernels, name, lambda: emulated)


def _batch(padded: bool = True) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(5, TINY["vocab_size"], (3, 13), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0 if padded else 1
    labels = ids.masked_fill(torch.rand(ids.shape, generator=gen) > 0.3, -100).masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}, labels


def _step(
    model: torch.nn.Module, autocast: bool, dtype: torch.dtype = torch.bfloat16, padded: bool = True
) -> tuple[float, torch.Tensor]:
    """Loss and the flat gradient of one step (autocast to `dtype` on or off)."""
    batch, labels = _batch(padded)
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=dtype, enabled=autocast):
        loss = model(**batch, labels=labels).loss
    loss.backward()
    return float(loss.detach()), torch.cat(
        [p.grad.float().flatten() for p in model.parameters() if p.grad is not None]
    )


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_linear_in_fp32_is_a_half_precision_gemm_with_fp32_sums(half):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 48, generator=gen, requires_grad=True)
    weight = torch.randn(40, 48, generator=gen, requires_grad=True)
    bias = torch.randn(40, generator=gen, requires_grad=True)
    out = HalfLinearInFp32.apply(x, weight, bias, half)
    grad = torch.randn(out.shape, generator=gen).to(half)
    out.backward(grad)
    assert out.dtype == half and x.grad.dtype == weight.grad.dtype == bias.grad.dtype == torch.float32

    # The same GEMMs in float64 on the rounded operands: they differ by the fp32 sums' rounding only.
    x16, w16 = x.detach().to(half).double(), weight.detach().to(half).double()
    expected = (x16 @ w16.T + bias.detach().double()).to(half)
    torch.testing.assert_close(out.float(), expected.float(), rtol=8e-3, atol=1e-5)  # one rounding
    g = grad.double().reshape(-1, 40)
    torch.testing.assert_close(x.grad.double(), (g @ w16).view(2, 7, 48), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weight.grad.double(), g.T @ x16.reshape(-1, 48), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bias.grad.double(), g.sum(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("position", ["absolute", "relative_key"])
def test_no_half_precision_gemm_runs_under_autocast_where_it_is_emulated(emulated, position, half):
    config = openalbert.AlbertConfig(**TINY | NO_DROPOUT, position_embedding_type=position)
    model = openalbert.AlbertForPreTraining(config).train()
    batch, labels = _batch()
    with GemmDtypes() as gemms:
        with torch.autocast("cpu", dtype=half):
            out = model(**batch, labels=labels, sentence_order_label=torch.tensor([0, 1, 0]))
        out.loss.backward()
    assert len(gemms.seen) > 30  # the forward and backward GEMMs of every layer were seen
    assert not [(op, d) for op, d in gemms.seen if half in d]


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("position", ["absolute", "relative_key"])
def test_autocast_where_emulated_matches_pytorchs_half_precision_and_fp32(monkeypatch, position, half):
    config = openalbert.AlbertConfig(**TINY | NO_DROPOUT, position_embedding_type=position)
    torch.manual_seed(0)
    model = openalbert.AlbertForMaskedLM(config).train()
    fp32_loss, fp32_grad = _step(model, autocast=False)
    _emulate(monkeypatch, False)
    torch_loss, torch_grad = _step(model, autocast=True, dtype=half)  # PyTorch's half-precision GEMMs
    _emulate(monkeypatch, True)
    loss, grad = _step(model, autocast=True, dtype=half)
    assert abs(loss - torch_loss) < 1e-2 * abs(torch_loss) and abs(loss - fp32_loss) < 2e-2 * abs(fp32_loss)
    # ours is as close to fp32 as PyTorch's is (it rounds the same operands, and sums in fp32)
    assert F.cosine_similarity(grad, torch_grad, dim=0) > 0.999
    ours, theirs = (F.cosine_similarity(g, fp32_grad, dim=0) for g in (grad, torch_grad))
    assert ours > 0.999 and ours >= theirs - 1e-4


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("position", ["absolute", "relative_key", "relative_key_query"])
@pytest.mark.parametrize("padded", [True, False], ids=["padded", "full"])
def test_half_precision_weights_train_with_fp32_gemms_where_emulated(emulated, position, padded, half):
    # Padded batches train on the unpadded path, which widens attention to fp32 itself; full ones do not.
    config = openalbert.AlbertConfig(**TINY | NO_DROPOUT, position_embedding_type=position)
    torch.manual_seed(0)
    model = openalbert.AlbertForMaskedLM(config).train()
    _, fp32_grad = _step(model, autocast=False, padded=padded)
    halved = copy.deepcopy(model).to(half)
    with GemmDtypes() as gemms:
        loss, grad = _step(halved, autocast=False, padded=padded)
    assert all(p.grad.dtype == half for p in halved.parameters() if p.grad is not None)
    assert not [d for _, d in gemms.seen if half in d]
    assert F.cosine_similarity(grad, fp32_grad, dim=0) > 0.99


@pytest.mark.parametrize(
    "head",
    [
        openalbert.AlbertForSequenceClassification,
        openalbert.AlbertForTokenClassification,
        openalbert.AlbertForQuestionAnswering,
        openalbert.AlbertForMultipleChoice,
    ],
)
def test_no_half_precision_gemm_in_any_heads_training_step_where_emulated(emulated, head):
    config = openalbert.AlbertConfig(**TINY | NO_DROPOUT)
    model = head(config).train()
    batch, _ = _batch()
    if head is openalbert.AlbertForMultipleChoice:
        batch = {k: v[None] for k, v in batch.items()}  # one question, three choices
    with GemmDtypes() as gemms:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(**batch)
        next(v for v in vars(out).values() if isinstance(v, torch.Tensor)).float().sum().backward()
    assert gemms.seen and not [(op, d) for op, d in gemms.seen if torch.bfloat16 in d]
