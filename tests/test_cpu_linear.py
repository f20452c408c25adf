"""openalbert's linear kernel for AVX2 CPUs (`cpu_kernels.linear`, fp32 arithmetic on fp32 or bf16 tensors):
values against float64 for every shape class the blocking has (row tails, input blocks, thread splits), the
fused bias, GELU, ReLU and residual, the model on it against PyTorch's GEMMs, and the fallback when it cannot
be built."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tests.conftest import TINY

import openalbert
from openalbert import AlbertConfig, AlbertModel, cpu_kernels, linear

needs_linear = pytest.mark.skipif(
    not cpu_kernels.linear_available(),
    reason="the AVX2 linear kernel serves CPUs with AVX2 and FMA but no AVX-512, with a C compiler",
)

ACTIVATIONS = {
    None: lambda y: y,
    "gelu_new": lambda y: F.gelu(y, approximate="tanh"),
    "relu": F.relu,
}


@needs_linear
@pytest.mark.parametrize(
    "m, k, n",
    [(1, 16, 16), (5, 128, 48), (6, 384, 16), (7, 385, 32), (97, 768, 784), (250, 1000, 64)],
)
@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_linear_matches_float64(m, k, n, threads):
    gen = torch.Generator().manual_seed(m * k + n)
    x = torch.randn(m, k, generator=gen)
    w = torch.randn(n, k, generator=gen) / k**0.5
    b = torch.randn(n, generator=gen)
    r = torch.randn(m, n, generator=gen)
    packed = cpu_kernels.pack_linear(w)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name, act in ACTIVATIONS.items():
            for bias in (b, None):
                for residual in (r, None):
                    got = cpu_kernels.linear(x, packed, bias, name, residual)
                    y = x.double() @ w.double().T + (0 if bias is None else bias.double())
                    want = act(y) + (0 if residual is None else residual.double())
                    assert got.shape == (m, n) and got.dtype == torch.float32
                    # fp32 sums of k products: a few ulps of the terms' size
                    torch.testing.assert_close(got.double(), want, atol=2e-6 * k**0.5, rtol=1e-5)
    finally:
        torch.set_num_threads(before)


@needs_linear
@pytest.mark.parametrize("m, k, n", [(1, 16, 16), (7, 385, 32), (97, 768, 784)])
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("dtype, bits", [(torch.bfloat16, 8), (torch.float16, 11)])
def test_half_precision_linear_rounds_fp32_sums_once(m, k, n, threads, dtype, bits):
    """bf16 or fp16 in and out: the sums, bias, activation and residual add in fp32 (half precision widens
    exactly), rounded once, so at most a few outputs differ from float64 rounded to the dtype, each by one
    step of its `bits` significant bits (fp32's own rounding lands on the other side of a tie)."""
    gen = torch.Generator().manual_seed(m + n)
    x, r = torch.randn(m, k, generator=gen).to(dtype), torch.randn(m, n, generator=gen).to(dtype)
    w = (torch.randn(n, k, generator=gen) / k**0.5).to(dtype)
    b = torch.randn(n, generator=gen).to(dtype)
    packed = cpu_kernels.pack_linear(w)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name, act in ACTIVATIONS.items():
            got = cpu_kernels.linear(x, packed, b, name, r)
            want = (act(x.double() @ w.double().T + b.double()) + r.double()).to(dtype)
            assert got.dtype == dtype and got.shape == (m, n)
            differ = got != want
            # fp32's sums are off by about 1e-7 relative: a few thousandths of a bf16 step, 8x more of fp16's
            assert differ.float().mean() < 1e-3 * 2 ** (bits - 8)
            # one step of the dtype, plus fp32's own error on sums of k terms (which shows on results near 0)
            step = want.double().abs() * 2 ** (1 - bits) + 2e-6 * k**0.5
            assert ((got.double() - want.double()).abs()[differ] <= step[differ]).all()
    finally:
        torch.set_num_threads(before)
    special = torch.tensor([[float("nan"), 1.0], [float("inf"), 1.0]]).to(dtype).repeat(1, 8)  # K = 16
    out = cpu_kernels.linear(special, cpu_kernels.pack_linear(torch.ones(16, 16)), None)
    assert out[0].isnan().all() and (out[1] == float("inf")).all()
    with pytest.raises(TypeError, match="float32, bfloat16 or float16"):
        cpu_kernels.linear(x.double(), packed, None)


@needs_linear
def test_linear_takes_batched_and_strided_inputs():
    x = torch.randn(2, 3, 64)[:, :, ::2]  # (2, 3, 32), not contiguous
    w, b = torch.randn(48, 32), torch.randn(48)
    residual = torch.randn(2, 3, 48)
    got = cpu_kernels.linear(x, cpu_kernels.pack_linear(w), b, "relu", residual)
    torch.testing.assert_close(got, F.relu(F.linear(x, w, b)) + residual, atol=1e-5, rtol=1e-5)
    transposed = torch.randn(32, 48).T  # a weight that is not contiguous
    torch.testing.assert_close(
        cpu_kernels.linear(x, cpu_kernels.pack_linear(transposed), b), F.linear(x, transposed, b)
    )
    assert cpu_kernels.linear(x[:0], cpu_kernels.pack_linear(w), b).shape == (0, 3, 48)  # no rows
    with pytest.raises(ValueError, match="at least one input feature"):
        cpu_kernels.linear(torch.randn(4, 0), torch.randn(3, 0, 16), None)
    with torch.no_grad():
        assert cpu_kernels.gelu_tanh(torch.randn(0)).shape == (0,)


def _model() -> AlbertModel:
    torch.manual_seed(0)
    return AlbertModel(AlbertConfig(**(TINY | {"intermediate_size": 48}))).eval()  # FFN widths of 16s


@needs_linear
@pytest.mark.parametrize("act", ["gelu_new", "gelu", "relu"])
def test_model_on_the_kernel_matches_pytorchs_gemms(monkeypatch, act):
    """Every fp32 inference call runs on the kernel (fused Q/K/V, FFN with its activation, residual adds);
    "gelu" (erf), which it does not fuse, is applied after it. Switching the kernel off remakes the packed
    weights in oneDNN's layout."""
    model = _model()
    model.config.hidden_act = act
    for group in model.encoder.albert_layer_groups:
        for layer in group.albert_layers:
            layer.hidden_act = act
    ids = torch.randint(5, 99, (3, 40))
    mask = torch.ones(3, 40, dtype=torch.long)
    mask[1, 25:] = 0
    with torch.no_grad():
        got = model(ids, attention_mask=mask).last_hidden_state
    attention = model.encoder.albert_layer_groups[0].albert_layers[0].attention
    assert attention.__dict__["_pack_cache"][0][0] == "avx2"
    with torch.enable_grad():  # autograd: F.linear
        want = model(ids, attention_mask=mask).last_hidden_state.detach()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)

    monkeypatch.setattr(cpu_kernels, "linear_available", lambda: False)
    with torch.no_grad():
        again = model(ids[:, :8]).last_hidden_state  # 24 rows: oneDNN's packed weights
    assert attention.__dict__["_pack_cache"][0][0] == "onednn"
    with torch.enable_grad():
        torch.testing.assert_close(again, model(ids[:, :8]).last_hidden_state.detach(), atol=1e-5, rtol=0)


@needs_linear
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_model_on_the_kernel_is_as_close_to_fp32_as_pytorchs(dtype):
    """Half-precision inference on a CPU without half-precision arithmetic runs the linear layers on the
    kernel (fp32 sums, one rounding) instead of PyTorch's emulated GEMMs: as close to the fp32 model or
    closer."""
    model = _model()
    ids = torch.randint(5, 99, (3, 40))
    mask = torch.ones(3, 40, dtype=torch.long)
    mask[1, 25:] = 0
    with torch.no_grad():
        want = model(ids, attention_mask=mask).last_hidden_state
        model.to(dtype)
        got = model(ids, attention_mask=mask).last_hidden_state
    assert got.dtype == dtype
    key = model.encoder.albert_layer_groups[0].albert_layers[0].ffn.__dict__["_pack_cache"][0]
    assert key[0] == "avx2" and key[1][2] == dtype  # (packer, (version, pointer, dtype))
    with torch.enable_grad():  # autograd: PyTorch's half-precision GEMMs
        pytorch = model(ids, attention_mask=mask).last_hidden_state.detach()
    keep = mask.bool()
    ours, theirs = ((got - want)[keep].abs().max(), (pytorch.float() - want)[keep].abs().max())
    assert ours <= theirs * 1.25 + 1e-3, (ours, theirs)
    assert F.cosine_similarity(got[keep].float(), want[keep], dim=-1).min() > 0.999


@needs_linear
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_mlm_head_runs_on_the_kernel(dtype):
    """The MLM head's projections (the tied decoder included) are packed for inference like the encoder's:
    the same logits as PyTorch's GEMMs, and in bf16 no emulated GEMM."""
    torch.manual_seed(0)
    config = AlbertConfig(**(TINY | {"vocab_size": 112, "intermediate_size": 48}))  # widths of 16s
    model = openalbert.AlbertForMaskedLM(config).eval().to(dtype)
    ids = torch.randint(5, 112, (2, 12))
    with torch.no_grad():
        got = model(ids).logits
    assert model.predictions.decoder.__dict__["_pack_cache"][0][0] == "avx2"
    with torch.enable_grad():  # autograd: F.linear
        want = model(ids).logits.detach()
    tol = {torch.float32: 1e-5, torch.bfloat16: 8e-3, torch.float16: 1e-3}[
        dtype
    ]  # logits <= 0.3: a few steps
    torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=0)


def test_a_failed_build_warns_once_and_linear_layers_fall_back(monkeypatch, failing_compiler):
    if cpu_kernels.has_avx512() or not cpu_kernels.has_avx2():
        pytest.skip("the AVX2 linear kernel is not tried on this CPU")
    with pytest.warns(RuntimeWarning, match="could not build its CPU kernels.*linear layers"):
        assert not cpu_kernels.linear_available()
    assert "no such compiler" in cpu_kernels.linear_status()
    with torch.no_grad():
        assert torch.isfinite(_model()(torch.randint(5, 99, (2, 10))).last_hidden_state).all()
    assert linear.packer_for(torch.randn(2, 10, 16), torch.randn(32, 16)) in ("onednn", None)
    monkeypatch.setenv("OPENALBERT_CPU_KERNEL", "0")
    cpu_kernels._load.cache_clear()
    assert cpu_kernels.linear_status() == "off (OPENALBERT_CPU_KERNEL=0)"


@needs_linear
@pytest.mark.parametrize("n", [1, 7, 8, 9, 4097, 4 * 4096 * 3 + 5])
def test_gelu_for_inference_matches_float64(n):
    """Without AVX-512, fp32 GELU outside autograd (after int8 layers) runs on the AVX2 kernel; with
    autograd it stays PyTorch's."""
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=gen) * 4
    x[: min(n, 4)] = torch.tensor([-12.0, 12.0, 0.0, -9.7])[: min(n, 4)]  # tails, zero
    want = F.gelu(x.double(), approximate="tanh")
    with torch.no_grad():
        got = cpu_kernels.gelu_tanh(x)
    torch.testing.assert_close(got.double(), want, atol=1e-6, rtol=2e-6)
    strided = torch.randn(64, 48)[:, ::3]
    with torch.inference_mode():
        torch.testing.assert_close(cpu_kernels.gelu_tanh(strided), F.gelu(strided, approximate="tanh"))
    leaf = x.clone().requires_grad_()
    assert cpu_kernels.gelu_tanh(leaf).grad_fn.name() == "GeluBackward0"


def test_fp16_runs_on_onednns_fp32_packed_weights_where_the_avx2_kernel_does_not_serve(monkeypatch):
    """On AVX-512 CPUs (oneDNN's packed GEMMs) fp16 has no fast GEMM either, unless the CPU has AVX512-FP16
    or AMX: it is widened onto oneDNN's fp32 packed weights, summed in fp32 and rounded once, as on the AVX2
    kernel, instead of running PyTorch's emulated fp16 GEMMs."""
    monkeypatch.setattr(linear, "_AVX512", True)
    monkeypatch.setattr(cpu_kernels, "linear_available", lambda: False)
    model = _model()
    ids = torch.randint(5, 99, (3, 40))
    with torch.no_grad():
        want = model(ids).last_hidden_state
        model.to(torch.float16)
        got = model(ids).last_hidden_state
    assert got.dtype == torch.float16
    key = model.encoder.albert_layer_groups[0].albert_layers[0].ffn.__dict__["_pack_cache"][0]
    assert key[0] == "onednn" and key[1][2] == torch.float16  # (packer, (version, pointer, dtype))
    with torch.enable_grad():  # autograd: PyTorch's fp16 GEMMs
        pytorch = model(ids).last_hidden_state.detach()
    ours, theirs = ((got.float() - want).abs().max(), (pytorch.float() - want).abs().max())
    assert ours <= theirs * 1.25 + 1e-3, (ours, theirs)
    assert F.cosine_similarity(got.float().flatten(1), want.flatten(1), dim=-1).min() > 0.999


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("classifier", [False, True])  # True: the [CLS]-only last layer calls q, k, v alone
def test_packed_weights_follow_writes_through_data(dtype, classifier):
    """A write through `.data` bumps no version counter (PEFT's LoRA merge adds its delta that way): the
    packed weights are checked again on the next forward pass and remade."""
    torch.manual_seed(0)
    cls = openalbert.AlbertForSequenceClassification if classifier else AlbertModel
    model = cls(AlbertConfig(**TINY)).to(dtype).eval()
    ids = torch.randint(5, TINY["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(1))

    def run() -> torch.Tensor:
        with torch.no_grad():
            out = model(ids)
        return (out.logits if classifier else out.last_hidden_state).float()

    run()  # packs (where a kernel serves this dtype here)
    layer = (model.albert if classifier else model).encoder.albert_layer_groups[0].albert_layers[0]
    # a whole tensor, one row, one column, one bias entry: before, 16 sampled values missed the last three
    edits = (
        lambda: layer.attention.query.weight.data.add_(0.05),
        lambda: layer.ffn.weight.data[7].mul_(3.0),
        lambda: layer.ffn_output.weight.data[:, 5].zero_(),
        lambda: layer.attention.value.bias.data[3].add_(1.0),
    )
    for edit in edits:
        edit()
        fresh = cls(AlbertConfig(**TINY)).to(dtype).eval()
        fresh.load_state_dict(model.state_dict())
        with torch.no_grad():
            expected = fresh(ids)
        expected = (expected.logits if classifier else expected.last_hidden_state).float()
        torch.testing.assert_close(run(), expected, atol=1e-6, rtol=1e-6)


def test_the_tied_decoder_follows_a_new_embedding_row_written_through_data():
    # The masked-LM decoder multiplies by a packed copy of the word embeddings: a row set through .data
    # (a new token's vector after resize_token_embeddings) must reach the logits, as in transformers.
    model = openalbert.AlbertForMaskedLM.from_pretrained(openalbert.DEFAULT_MODEL)
    ids = torch.tensor([[2, 105, 4, 3]])
    with torch.no_grad():
        before = model(ids).logits[0, 1, 105]
    model.get_input_embeddings().weight.data[105] *= 3.0
    fresh = openalbert.AlbertForMaskedLM.from_pretrained(openalbert.DEFAULT_MODEL)
    fresh.get_input_embeddings().weight.data[105] *= 3.0
    with torch.no_grad():
        got, expected = model(ids).logits, fresh(ids).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert abs(float(got[0, 1, 105] - before)) > 1.0
