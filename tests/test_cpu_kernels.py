"""openalbert's compiled GELU (tanh approximation): values and gradients against PyTorch's in float64, the
paths that keep PyTorch's, and the model's training step on it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import openalbert
from openalbert import cpu_kernels

needs_kernel = pytest.mark.skipif(
    not cpu_kernels.available(), reason="no C compiler or no AVX-512 here: the kernels are not built"
)


def _reference(x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x64 = x.double().requires_grad_()
    y = F.gelu(x64, approximate="tanh")
    y.backward(grad.double())
    return y.detach(), x64.grad


@needs_kernel
@pytest.mark.parametrize("n", [1, 15, 16, 17, 4097, 3 * 4096 * 5 + 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gelu_matches_float64_at_least_as_well_as_pytorch(n, dtype):
    gen = torch.Generator().manual_seed(n)
    x = (torch.randn(n, generator=gen, dtype=torch.float64) * 4).to(dtype)
    x[: min(n, 5)] = torch.tensor([-12.0, 12.0, 0.0, -9.7, 1e-3], dtype=dtype)[: min(n, 5)]  # tails, zero
    grad = torch.randn(n, generator=gen).to(dtype)
    y_ref, dx_ref = _reference(x, grad)

    ours = x.clone().requires_grad_()
    y = cpu_kernels.gelu_tanh(ours)
    y.backward(grad)
    theirs = x.clone().requires_grad_()
    y_torch = F.gelu(theirs, approximate="tanh")
    y_torch.backward(grad)

    assert y.dtype == dtype and ours.grad.dtype == dtype and y.shape == x.shape

    def error(a: torch.Tensor, ref: torch.Tensor) -> float:  # relative, absolute below 1e-2
        return float(((a.detach().double() - ref).abs() / ref.abs().clamp(min=1e-2)).max())

    # bf16: both are the float64 value rounded once (half an ulp, 2^-9), give or take fp32's last bits
    limit = 2**-8 if dtype == torch.bfloat16 else 2e-6
    for ours_value, torch_value, ref in ((y, y_torch, y_ref), (ours.grad, theirs.grad, dx_ref)):
        assert error(ours_value, ref) <= max(limit, error(torch_value, ref))


@needs_kernel
def test_gelu_takes_strided_inputs_and_keeps_pytorch_for_other_dtypes():
    x = torch.randn(64, 48)[:, ::3]  # not contiguous
    assert torch.allclose(cpu_kernels.gelu_tanh(x), F.gelu(x, approximate="tanh"), atol=1e-6)
    x64 = torch.randn(32, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(cpu_kernels.gelu_tanh, (x64,))  # float64: PyTorch's kernel


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_gelu_in_place_equals_gelu_and_reuses_the_buffer_where_a_kernel_serves(dtype):
    """gelu_tanh_ writes over its input where a compiled kernel takes it (AVX-512 for fp32 and bf16, AVX2
    for fp32), with the values gelu_tanh gives; elsewhere (float64, a strided view) it returns a new tensor."""
    x = torch.randn(3, 4097, generator=torch.Generator().manual_seed(0)).to(dtype) * 4
    expected = cpu_kernels.gelu_tanh(x.clone())
    buffer = x.clone()
    got = cpu_kernels.gelu_tanh_(buffer)
    assert torch.equal(got, expected)
    served = cpu_kernels.available() or (dtype == torch.float32 and cpu_kernels.linear_available())
    assert (got.data_ptr() == buffer.data_ptr()) == (served and dtype != torch.float64)
    strided = x.clone().t()
    assert torch.equal(cpu_kernels.gelu_tanh_(strided), expected.t())


def test_activate_and_add_in_place_only_where_the_result_fits():
    """activate_and_add_ gives activate_and_add's values; it adds into `out` only where the sum keeps out's
    shape and dtype (an fp32 residual on a bf16 output promotes, a broadcast residual grows)."""
    from openalbert.linear import activate_and_add, activate_and_add_

    gen = torch.Generator().manual_seed(0)
    out, residual = torch.randn(5, 8, generator=gen), torch.randn(5, 8, generator=gen)
    expected = activate_and_add(out.clone(), "gelu_new", residual)
    buffer = out.clone()
    got = activate_and_add_(buffer, "gelu_new", residual)
    assert torch.equal(got, expected) and got.data_ptr() == buffer.data_ptr()
    half = out.bfloat16()
    promoted = activate_and_add_(half.clone(), None, residual)
    assert promoted.dtype == torch.float32 and torch.equal(promoted, residual + half)
    row = residual[:1]
    small = out[:1].clone()
    grown = activate_and_add_(small, "relu", residual)
    assert grown.shape == (5, 8) and torch.equal(grown, residual + F.relu(out[:1]))
    assert torch.equal(activate_and_add_(row.clone(), None, None), row)


@needs_kernel
def test_gelu_second_derivatives_and_torch_func():
    x = torch.randn(64, requires_grad=True)
    (first,) = torch.autograd.grad(cpu_kernels.gelu_tanh(x).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), x)
    x64 = x.detach().double().requires_grad_()
    (first64,) = torch.autograd.grad(F.gelu(x64, approximate="tanh").sum(), x64, create_graph=True)
    (second64,) = torch.autograd.grad(first64.sum(), x64)
    torch.testing.assert_close(second.double(), second64, rtol=1e-4, atol=1e-5)
    by_func = torch.func.grad(lambda t: cpu_kernels.gelu_tanh(t).sum())(x.detach())
    torch.testing.assert_close(by_func, first.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning")  # traced on purpose
def test_gelu_keeps_pytorch_while_tracing(monkeypatch):
    def refuse(*args):
        raise AssertionError("the compiled GELU ran while tracing")

    monkeypatch.setattr(cpu_kernels._GeluTanh, "apply", refuse)
    traced = torch.jit.trace(cpu_kernels.gelu_tanh, torch.randn(8), check_trace=False)  # no eager rerun
    x = torch.randn(8)
    assert torch.allclose(traced(x), F.gelu(x, approximate="tanh"))


@needs_kernel
def test_training_gradients_are_the_same_with_pytorchs_gelu(monkeypatch):
    config = openalbert.AlbertConfig(
        vocab_size=90, embedding_size=16, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32,
    )  # fmt: skip
    torch.manual_seed(0)
    model = openalbert.AlbertForMaskedLM(config).train()
    ids = torch.randint(5, 90, (3, 12))
    labels = torch.where(torch.rand(3, 12) < 0.3, ids, -100)

    def grads() -> tuple[float, dict[str, torch.Tensor]]:
        model.zero_grad()
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        return float(loss), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    calls = []
    real = cpu_kernels._elementwise
    monkeypatch.setattr(cpu_kernels, "_elementwise", lambda name, *a: calls.append(name) or real(name, *a))
    loss, ours = grads()
    assert {"albert_gelu_tanh", "albert_gelu_tanh_backward"} <= set(calls)  # both directions compiled
    monkeypatch.setattr(cpu_kernels, "_kernel_takes", lambda x: False)
    loss_torch, theirs = grads()
    assert abs(loss - loss_torch) < 1e-6
    for k in theirs:
        assert torch.allclose(ours[k], theirs[k], rtol=1e-4, atol=1e-6), k


# ---- cross-entropy ---------------------------------------------------------------------------------------------


@needs_kernel
@pytest.mark.parametrize("vocab", [1, 17, 30000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cross_entropy_matches_float64_like_pytorchs_under_autocast(vocab, dtype):
    gen = torch.Generator().manual_seed(vocab)
    logits = (torch.randn(37, vocab, generator=gen) * 3).to(dtype)
    targets = torch.randint(0, vocab, (37,), generator=gen)
    ours = logits.clone().requires_grad_()
    loss = cpu_kernels.cross_entropy_sum(ours, targets)
    (loss * 0.37).backward()
    ref = logits.double().requires_grad_()
    ref_loss = F.cross_entropy(ref, targets, reduction="sum")
    (ref_loss * 0.37).backward()
    assert loss.dtype == torch.float32 and ours.grad.dtype == dtype
    assert abs(float(loss) - float(ref_loss)) <= 2e-6 * abs(float(ref_loss)) + 1e-5
    # fp32: a few ulps; bf16: the float64 gradient rounded once, as autocast's cast back rounds it
    limit = 2e-6 if dtype == torch.float32 else 2**-8 * float(ref.grad.abs().max())
    assert float((ours.grad.double() - ref.grad).abs().max()) <= limit


@needs_kernel
def test_cross_entropy_keeps_pytorchs_errors_and_second_derivatives():
    logits = torch.randn(4, 10, requires_grad=True)
    with pytest.raises((IndexError, RuntimeError)):
        cpu_kernels.cross_entropy_sum(logits, torch.tensor([0, 1, 2, 10]))  # out of range: PyTorch says so
    (first,) = torch.autograd.grad(
        cpu_kernels.cross_entropy_sum(logits, torch.tensor([0, 1, 2, 3])), logits, create_graph=True
    )
    (second,) = torch.autograd.grad((first * torch.arange(10.0)).sum(), logits)
    ref = logits.detach().double().requires_grad_()
    (ref_first,) = torch.autograd.grad(
        F.cross_entropy(ref, torch.tensor([0, 1, 2, 3]), reduction="sum"), ref, create_graph=True
    )
    (ref_second,) = torch.autograd.grad((ref_first * torch.arange(10.0, dtype=torch.float64)).sum(), ref)
    torch.testing.assert_close(second.double(), ref_second, rtol=1e-4, atol=1e-6)
