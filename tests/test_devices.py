"""The model, a bf16 training step and the fill-mask pipeline on every device present.

Each test runs on the CPU and, where torch sees one, on CUDA: a GPU session runs the same checks
against the same fp32 CPU reference (on a CPU-only machine the CUDA rows skip).
"""

from __future__ import annotations

import copy

import pytest
import torch
from tests.conftest import TINY

import openalbert

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0)


def _batch() -> dict[str, torch.Tensor]:
    """Three right-padded sequences of different lengths."""
    ids = torch.randint(5, TINY["vocab_size"], (3, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


@pytest.mark.parametrize("position", ["absolute", "relative_key"])
@pytest.mark.parametrize("device", DEVICES)
def test_unpadded_on_device_matches_the_cpu_fp32_reference(device, position):
    config = openalbert.AlbertConfig(**TINY | NO_DROPOUT, position_embedding_type=position)
    model = openalbert.AlbertModel(config).eval()
    batch = _batch()
    keep = batch["attention_mask"].bool()
    with torch.no_grad():
        model.set_attn_implementation("sdpa")
        reference = model(**batch).last_hidden_state
        moved = copy.deepcopy(model).to(device)
        moved.set_attn_implementation("unpadded")
        got = moved(**{k: v.to(device) for k, v in batch.items()}).last_hidden_state.cpu()
    torch.testing.assert_close(got[keep], reference[keep], atol=1e-4, rtol=1e-4)
    assert not got[~keep].any()  # padding positions are zeros on the unpadded path


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("device", DEVICES)
def test_default_attention_in_half_precision_on_device(device, dtype):
    if device == "cpu" and dtype == torch.float16:
        pytest.skip("fp16 has no fast CPU kernels; the CPU's half precision is bf16")
    config = openalbert.AlbertConfig(**TINY | NO_DROPOUT, position_embedding_type="relative_key")
    model = openalbert.AlbertModel(config).eval()
    batch = _batch()
    keep = batch["attention_mask"].bool()
    with torch.no_grad():
        reference = model(**batch).last_hidden_state
        half = copy.deepcopy(model).to(device=device, dtype=dtype)  # "auto": the default
        got = half(**{k: v.to(device) for k, v in batch.items()}).last_hidden_state.float().cpu()
    torch.testing.assert_close(got[keep], reference[keep], atol=5e-2, rtol=5e-2)
    # "auto" skips the padding on the CPU and computes it for half-precision weights on a GPU.
    assert bool(got[~keep].any()) == (device == "cuda")


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_training_step_on_device(device):
    config = openalbert.AlbertConfig(**TINY | NO_DROPOUT, position_embedding_type="relative_key")
    model = openalbert.AlbertForMaskedLM(config).train()
    batch = _batch()
    labels = batch["input_ids"].masked_fill(~batch["attention_mask"].bool(), -100)

    def gradients(m: torch.nn.Module, dev: str, autocast: bool) -> tuple[float, torch.Tensor]:
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast):
            loss = m(**{k: v.to(dev) for k, v in batch.items()}, labels=labels.to(dev)).loss
        loss.backward()
        flat = torch.cat(
            [p.grad.detach().float().cpu().flatten() for p in m.parameters() if p.grad is not None]
        )
        return float(loss.detach()), flat

    ref_loss, ref_grad = gradients(model, "cpu", autocast=False)
    moved = copy.deepcopy(model).to(device)
    moved.zero_grad(set_to_none=True)
    loss, grad = gradients(moved, device, autocast=True)
    assert abs(loss - ref_loss) < 2e-2 * abs(ref_loss)
    assert torch.nn.functional.cosine_similarity(grad, ref_grad, dim=0) > 0.99
    before = [p.detach().clone() for p in moved.parameters()]
    torch.optim.AdamW(moved.parameters(), lr=1e-3).step()
    assert all(torch.isfinite(p).all() for p in moved.parameters())
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, moved.parameters()))


@pytest.mark.parametrize("device", DEVICES)
def test_fill_mask_pipeline_on_device(device):
    text = "The capital of France is [MASK]."
    reference = openalbert.pipeline("fill-mask")(text)
    got = openalbert.pipeline("fill-mask", device=device)(text)
    assert [r["token_str"] for r in got] == [r["token_str"] for r in reference]
    for a, b in zip(got, reference):
        assert abs(a["score"] - b["score"]) < 1e-4


def test_pipelines_on_cuda_graphs():
    texts = ["The capital of France is [MASK].", "Plants make [MASK] from light, water and air.", "A [MASK]."]
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA graphs need a model on a CUDA device"):
            openalbert.pipeline("fill-mask", cuda_graphs=True)
        return
    reference = openalbert.pipeline("fill-mask")(texts)
    fill = openalbert.pipeline("fill-mask", device="cuda", cuda_graphs=True)
    for _ in range(2):  # captured, then replayed
        got = fill(texts)
        for row, expected in zip(got, reference, strict=True):
            assert [r["token_str"] for r in row] == [r["token_str"] for r in expected]
            assert all(abs(a["score"] - b["score"]) < 1e-4 for a, b in zip(row, expected))
    assert fill.model.graphs  # the forwards ran from graphs


@pytest.mark.parametrize(
    "flags, kernel, warns",
    [
        ({"avx2", "fma"}, False, True),
        ({"avx2", "fma"}, True, False),  # openalbert's AVX2 kernel runs bf16 inference in fp32 arithmetic
        ({"avx2", "avx512f", "avx512_bf16"}, False, False),
        ({"avx2", "amx_bf16"}, False, False),
        (set(), False, False),
    ],
)
def test_bf16_warns_where_the_cpu_emulates_it(tmp_path, monkeypatch, flags, kernel, warns):
    """bf16 weights (from_pretrained) on an x86 CPU without AVX512_BF16 or AMX get one warning that it runs
    emulated, unless openalbert's AVX2 linear kernel serves there; fp32 never does, nor a CPU whose flags
    cannot be read."""
    import warnings

    from openalbert import cpu_kernels

    openalbert.AlbertModel(openalbert.AlbertConfig(**TINY)).save_pretrained(tmp_path)
    monkeypatch.setattr(cpu_kernels, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(cpu_kernels, "linear_available", lambda: kernel)
    cpu_kernels._warn_once.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        openalbert.AlbertModel.from_pretrained(tmp_path)
        assert not caught
        openalbert.AlbertModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
        openalbert.AlbertModel.from_pretrained(tmp_path, dtype="bf16")  # once per process
    emulated = [w for w in caught if "without bf16 arithmetic" in str(w.message)]
    assert len(emulated) == warns, [str(w.message) for w in caught]
    assert all(w.filename == __file__ for w in emulated)  # points at the caller
    cpu_kernels._warn_once.cache_clear()
