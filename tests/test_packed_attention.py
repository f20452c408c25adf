"""The compiled CPU attention kernel (AVX-512, or AVX2 on CPUs without it): its numbers against PyTorch's
attention, the model paths that take it (and those that must not), and the fallback when it cannot be
built."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import openalbert
from openalbert import cpu_kernels, packed_attention
from openalbert.packed_attention import PackedSequences

needs_kernel = pytest.mark.skipif(
    not packed_attention.available(), reason="no C compiler or no AVX2 here: the kernel is not built"
)


def _reference(
    qkv: torch.Tensor,
    lengths: list[int],
    heads: int,
    head_dim: int,
    dtype: torch.dtype = torch.float64,
    table: torch.Tensor | None = None,
) -> torch.Tensor:
    C, out, start = heads * head_dim, [], 0
    for L in lengths:
        x = qkv[start : start + L].to(dtype).view(L, 3, heads, head_dim).permute(1, 2, 0, 3)
        bias = None
        if (
            table is not None
        ):  # q_i . table[P - 1 + i - j], unscaled (Shaw et al.; transformers' relative_key)
            pos = torch.arange(L)
            rel = table.to(dtype)[pos[:, None] - pos[None, :] + (table.shape[0] - 1) // 2]  # (L, L, hd)
            bias = torch.einsum("hld,lrd->hlr", x[0], rel)
        out.append(F.scaled_dot_product_attention(x[0], x[1], x[2], bias).transpose(0, 1).reshape(L, C))
        start += L
    return torch.cat(out)


@needs_kernel
@pytest.mark.parametrize("heads, head_dim", [(12, 64), (4, 32), (3, 48), (2, 128)])
def test_kernel_matches_attention_per_sequence(heads, head_dim):
    lengths = [1, 16, 17, 3, 50, 129, 512, 64]
    gen = torch.Generator().manual_seed(heads)
    qkv = torch.randn(sum(lengths), 3 * heads * head_dim, generator=gen) * 2
    sequences = PackedSequences.from_lengths(torch.tensor(lengths))
    ref = _reference(qkv, lengths, heads, head_dim)
    out = packed_attention.packed_attention(qkv, sequences, heads, head_dim)
    # fp32 rounding only: as close to the float64 answer as PyTorch's own fp32 kernel is, within 2x.
    torch_fp32 = _reference(qkv, lengths, heads, head_dim, torch.float32)
    assert out.dtype == torch.float32
    assert (out.double() - ref).abs().max() <= 2 * (torch_fp32.double() - ref).abs().max() + 1e-6

    # bf16 in and out: fp32 arithmetic on the bf16 values, one rounding at the end.
    qkv16 = qkv.bfloat16()
    out16 = packed_attention.packed_attention(qkv16, sequences, heads, head_dim)
    ref16 = _reference(qkv16.float(), lengths, heads, head_dim)
    assert out16.dtype == torch.bfloat16
    assert ((out16.double() - ref16).abs() <= ref16.abs() * 2**-8 + 1e-4).all()  # half an ulp, plus fp32's


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_adds_relative_key_scores(dtype):
    heads, head_dim, positions = 4, 32, 130
    lengths = [1, 7, 16, 33, 130]
    gen = torch.Generator().manual_seed(3)
    qkv = (torch.randn(sum(lengths), 3 * heads * head_dim, generator=gen) * 2).to(dtype)
    table = torch.randn(2 * positions - 1, head_dim, generator=gen).to(dtype)
    sequences = PackedSequences.from_lengths(torch.tensor(lengths))
    out = packed_attention.packed_attention(qkv, sequences, heads, head_dim, table)
    ref = _reference(qkv.float(), lengths, heads, head_dim, table=table.float())
    plain = _reference(qkv.float(), lengths, heads, head_dim)
    assert (plain - ref).abs().max() > 0.1  # the distances matter
    tol = 2e-5 if dtype == torch.float32 else None
    if tol is not None:
        assert (out.double() - ref).abs().max() < tol
    else:
        assert ((out.double() - ref).abs() <= ref.abs() * 2**-8 + 1e-4).all()
    with pytest.raises(ValueError, match="does not cover"):
        packed_attention.packed_attention(qkv, sequences, heads, head_dim, table[:101])


def test_packed_sequences_skip_empty_rows_and_order_longest_first():
    sequences = PackedSequences.from_lengths(torch.tensor([3, 0, 5, 2]))
    assert sequences.starts.tolist() == [0, 3, 8] and sequences.lengths.tolist() == [3, 5, 2]
    assert sequences.order.tolist() == [1, 0, 2] and sequences.max_len == 5


@needs_kernel
def test_kernel_checks_its_inputs():
    sequences = PackedSequences.from_lengths(torch.tensor([4, 4]))
    with pytest.raises(ValueError, match="qkv must be"):
        packed_attention.packed_attention(torch.zeros(8, 100), sequences, 2, 16)
    with pytest.raises(ValueError, match="more rows"):
        packed_attention.packed_attention(torch.zeros(6, 96), sequences, 2, 16)


def _tiny(position_embedding_type: str = "absolute") -> openalbert.AlbertModel:
    torch.manual_seed(0)
    config = openalbert.AlbertConfig(
        vocab_size=99,
        embedding_size=16,
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=96,
        num_hidden_layers=3,
        position_embedding_type=position_embedding_type,
    )
    return openalbert.AlbertModel(config).eval()


def _batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(5, 99, (3, 20), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    mask[2, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@needs_kernel
@pytest.mark.parametrize("positions", ["absolute", "relative_key"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_model_outputs_are_the_same_with_and_without_the_kernel(monkeypatch, dtype, positions):
    model = _tiny(positions).to(dtype)
    calls = []
    real = packed_attention.packed_attention

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(packed_attention, "packed_attention", counted)
    with torch.inference_mode():
        padded = model(**_batch()).last_hidden_state  # the unpadded path
        full = model(input_ids=_batch()["input_ids"]).last_hidden_state  # no padding: the packed path
    assert len(calls) == 2 * model.config.num_hidden_layers
    monkeypatch.setattr(packed_attention, "supports", lambda *a: False)
    with torch.inference_mode():
        padded_ref = model(**_batch()).last_hidden_state
        full_ref = model(input_ids=_batch()["input_ids"]).last_hidden_state
    tol = 1e-5 if dtype == torch.float32 else 0.05
    assert (padded.float() - padded_ref.float()).abs().max() < tol
    assert (full.float() - full_ref.float()).abs().max() < tol


def test_paths_that_must_not_take_the_kernel(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the kernel ran")

    monkeypatch.setattr(packed_attention, "packed_attention", refuse)
    model = _tiny()
    model(**_batch()).last_hidden_state.sum().backward()  # autograd: no backward in the kernel
    with torch.inference_mode():
        _tiny("relative_key_query")(**_batch())  # key and query distances: PyTorch's kernels
        model.set_attn_implementation("sdpa")
        model(**_batch())
        model.set_attn_implementation("auto")
        model(**_batch(), output_attentions=True)


def test_a_failed_build_warns_once_and_attention_falls_back(monkeypatch, failing_compiler):
    if not (cpu_kernels.has_avx512() or cpu_kernels.has_avx2()):
        pytest.skip("no AVX2 or AVX-512: the kernel is not tried here")
    with pytest.warns(RuntimeWarning, match="could not build its CPU kernels"):
        assert not packed_attention.available()
    assert (
        packed_attention.status().startswith("not built: ")
        and "no such compiler" in packed_attention.status()
    )
    with torch.inference_mode():
        out = _tiny()(**_batch()).last_hidden_state
    assert torch.isfinite(out).all()
    x = torch.randn(40)  # the compiled GELU falls back with it
    assert torch.equal(cpu_kernels.gelu_tanh(x), F.gelu(x, approximate="tanh"))
    monkeypatch.setenv("OPENALBERT_CPU_KERNEL", "0")
    cpu_kernels._load.cache_clear()
    assert not packed_attention.available() and packed_attention.status() == "off (OPENALBERT_CPU_KERNEL=0)"
