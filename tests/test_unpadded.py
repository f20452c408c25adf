"""The default unpadded attention against the padded (transformers-layout) path of the same model."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import TINY

import openalbert
from openalbert import modeling


def _model(**overrides) -> openalbert.AlbertForMaskedLM:
    torch.manual_seed(0)
    return openalbert.AlbertForMaskedLM(openalbert.AlbertConfig(**(TINY | overrides))).eval()


def _batch(mask_rows: list[list[int]]) -> dict[str, torch.Tensor]:
    mask = torch.tensor(mask_rows)
    ids = torch.randint(5, TINY["vocab_size"], mask.shape, generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": mask}


def _both(model, batch, **kwargs):
    outs = []
    for impl in ("sdpa", "unpadded"):
        model.set_attn_implementation(impl)
        outs.append(model(**batch, **kwargs))
    return outs


RIGHT_PADDING = [[1] * 9, [1] * 4 + [0] * 5, [1] * 7 + [0] * 2]
HOLES = [[1, 1, 0, 1, 1, 0, 1, 1, 1], [1] * 9, [1, 0, 0, 0, 0, 0, 0, 0, 1]]
GROUPS = [[1] * n + [0] * (9 - n) for n in (3, 9, 1, 5, 5, 2, 8, 7, 4, 6, 9)]  # length groups of 2-3 rows


@pytest.mark.parametrize(
    "rows, positions",
    [
        (RIGHT_PADDING, "absolute"),
        (HOLES, "absolute"),
        (GROUPS, "absolute"),
        (RIGHT_PADDING, "relative_key"),
        (GROUPS, "relative_key_query"),
    ],
)
def test_same_numbers_on_real_tokens_zeros_at_padding(rows, positions):
    model = _model(position_embedding_type=positions)
    batch = _batch(rows)
    with torch.no_grad():
        padded, unpadded = _both(model, batch, output_hidden_states=True)
    keep = batch["attention_mask"].bool()
    torch.testing.assert_close(unpadded.logits[keep], padded.logits[keep], atol=1e-5, rtol=0)
    for a, b in zip(unpadded.hidden_states, padded.hidden_states):
        torch.testing.assert_close(a[keep], b[keep], atol=1e-5, rtol=0)
        assert not a[~keep].any()


def test_left_padding_and_attention_maps_take_the_padded_path():
    model = _model()
    batch = _batch([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        padded, unpadded = _both(model, batch)
        # Position 0 is padding in row 0, and the pooler reads position 0: every position is computed.
        torch.testing.assert_close(unpadded.logits, padded.logits, atol=0, rtol=0)
        # Relative positions count a hole as a position: only the padded path computes that.
        padded, unpadded = _both(_model(position_embedding_type="relative_key"), _batch(HOLES))
        torch.testing.assert_close(unpadded.logits, padded.logits, atol=0, rtol=0)
        maps = model(**_batch([[1, 1, 1, 0, 0], [1] * 5]), output_attentions=True).attentions
    assert maps[0].shape == (2, TINY["num_attention_heads"], 5, 5)


def test_auto_skips_padding_except_for_half_precision_on_a_gpu(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    rule = {
        (d.type, t): modeling.unpads_by_default(d, t)
        for d in (cpu, cuda)
        for t in (torch.float32, torch.bfloat16, torch.float16)
    }
    assert rule == {
        ("cpu", torch.float32): True,
        ("cpu", torch.bfloat16): True,
        ("cpu", torch.float16): True,
        ("cuda", torch.float32): True,
        ("cuda", torch.bfloat16): False,
        ("cuda", torch.float16): False,
    }
    # fp32 weights under half-precision autocast on a GPU (training) compute in half precision: padded too.
    # (CUDA's autocast state, read on a machine that may have no GPU.)
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda device="cuda": device == "cuda")
    monkeypatch.setattr(torch, "get_autocast_dtype", lambda device: torch.bfloat16)
    assert not modeling.unpads_by_default(cuda, torch.float32)
    assert modeling.unpads_by_default(cpu, torch.float32)
    monkeypatch.undo()
    model = _model()
    assert model.albert.encoder.attn_implementation == "auto"  # the default
    batch = _batch(RIGHT_PADDING)
    keep = batch["attention_mask"].bool()
    with torch.no_grad():
        auto = model(**batch, output_hidden_states=True).hidden_states[-1]
        padded, unpadded = _both(model, batch, output_hidden_states=True)
    assert torch.equal(auto, unpadded.hidden_states[-1]) and not auto[~keep].any()
    assert padded.hidden_states[-1][~keep].abs().sum() > 0  # "sdpa" computes the padding
    with pytest.raises(ValueError, match="auto, unpadded, sdpa, eager"):
        model.set_attn_implementation("flash")


@pytest.mark.parametrize("positions", ["absolute", "relative_key_query"])
def test_training_gradients_and_checkpointing_match_the_padded_path(monkeypatch, positions):
    model = _model(
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, position_embedding_type=positions
    ).train()
    batch = _batch([[1] * 8, [1] * 3 + [0] * 5])
    labels = batch["input_ids"].masked_fill(~batch["attention_mask"].bool(), -100)
    grads = []
    runs = [
        ("sdpa", False, True),
        ("unpadded", False, True),
        ("unpadded", True, True),
        ("unpadded", False, False),
    ]
    for impl, checkpointing, written_out in runs:
        # CPU training writes the attention scores out while they are small; the fused kernel otherwise.
        monkeypatch.setattr(modeling, "_EAGER_SCORES_LIMIT", 2**25 if written_out else 0)
        model.zero_grad()
        model.set_attn_implementation(impl)
        if checkpointing:
            model.gradient_checkpointing_enable()
        else:
            model.gradient_checkpointing_disable()
        model(**batch, labels=labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    for other in grads[1:]:
        assert other.keys() == grads[0].keys()
        for name, g in grads[0].items():
            torch.testing.assert_close(other[name], g, atol=1e-5, rtol=1e-4, msg=name)


def test_bf16_unpadded_close_to_fp32():
    model = _model()
    batch = _batch([[1] * 9, [1] * 4 + [0] * 5, [1] * 2 + [0] * 7, [1] * 6 + [0] * 3, [1] * 8 + [0]])
    keep = batch["attention_mask"].bool()
    with torch.no_grad():
        ref = model(**batch).logits[keep]
        got = model.to(torch.bfloat16)(**batch).logits[keep].float()
    assert torch.nn.functional.cosine_similarity(got, ref, dim=-1).min() > 0.99


def test_unknown_implementation_is_refused(tmp_path):
    model = _model()
    with pytest.raises(ValueError, match="unpadded, sdpa, eager"):
        model.set_attn_implementation("flash")
    model.save_pretrained(tmp_path)
    loaded = openalbert.AlbertModel.from_pretrained(tmp_path, attn_implementation="eager")
    assert loaded.encoder.attn_implementation == "eager"


def test_packed_weights_follow_a_fused_optimizer_step():
    # Fused AdamW updates weights without bumping their version: eval after training must see them.
    model = _model()
    batch = _batch([[1] * 9, [1] * 4 + [0] * 5])
    labels = batch["input_ids"].masked_fill(~batch["attention_mask"].bool(), -100)
    with torch.no_grad():
        before = model(**batch).logits  # packs the weights
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    model(**batch, labels=labels).loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        after = model(**batch).logits
    with torch.enable_grad():  # autograd on: the plain F.linear path, as a reference
        reference = model(**batch).logits.detach()
    keep = batch["attention_mask"].bool()
    assert not torch.allclose(after[keep], before[keep])
    torch.testing.assert_close(after[keep], reference[keep], atol=1e-5, rtol=0)


def test_model_built_under_inference_mode_runs(tmp_path):
    # Weights loaded inside torch.inference_mode() are inference tensors, which have no version counter
    # for the packed-weight cache to read; such a model must still run, and match one loaded outside.
    model = _model()
    model.save_pretrained(tmp_path)
    batch = _batch([[1] * 9, [1] * 4 + [0] * 5])
    keep = batch["attention_mask"].bool()
    with torch.inference_mode():
        loaded = type(model).from_pretrained(tmp_path).eval()
        assert next(loaded.parameters()).is_inference()
        got = loaded(**batch).logits
        again = loaded(**batch).logits  # the second call reads the cache
        reference = model.eval()(**batch).logits
    torch.testing.assert_close(got[keep], reference[keep], atol=1e-5, rtol=0)
    torch.testing.assert_close(again, got, atol=0, rtol=0)


def test_copy_and_save_after_cpu_inference(tmp_path):
    # CPU inference leaves packed oneDNN weights on the modules; deepcopy and torch.save must not trip on
    # them, and the copies must compute the same outputs.
    import copy

    model = _model().eval()
    batch = _batch([[1] * 9, [1] * 4 + [0] * 5])
    with torch.no_grad():
        before = model(**batch).logits
        copied = copy.deepcopy(model)
        torch.save(model, tmp_path / "whole.pt")
        loaded = torch.load(tmp_path / "whole.pt", weights_only=False)
        for other in (copied, loaded):
            torch.testing.assert_close(other(**batch).logits, before, atol=0, rtol=0)
    assert "_pack_cache" in model.albert.encoder.albert_layer_groups[0].albert_layers[0].attention.__dict__


@pytest.mark.parametrize("avx512", [True, False])
def test_packed_weights_only_for_few_rows_without_avx512(monkeypatch, avx512):
    """With AVX-512 every CPU inference call runs on oneDNN's packed weights; without it (and without
    openalbert's own AVX2 kernel) only calls of at most PACKED_ROWS_WITHOUT_AVX512 token rows do (larger
    ones were slower so on Zen 3). Same outputs either way."""
    from openalbert import cpu_kernels, linear

    monkeypatch.setattr(linear, "_AVX512", avx512)
    monkeypatch.setattr(cpu_kernels, "linear_available", lambda: False)
    limit = linear.PACKED_ROWS_WITHOUT_AVX512
    layer = lambda m: m.albert.encoder.albert_layer_groups[0].albert_layers[0].attention  # noqa: E731
    for rows, packs in (
        (limit, True),
        (limit + 1, avx512),
    ):  # real tokens in two sequences (TINY: 64 positions)
        model = _model()
        first, second = rows - limit // 2, limit // 2
        batch = _batch([[1] * first, [1] * second + [0] * (first - second)])
        with torch.no_grad():
            got = model(**batch).logits
        assert ("_pack_cache" in layer(model).__dict__) == packs, rows
        with torch.enable_grad():  # the plain F.linear path
            reference = model(**batch).logits.detach()
        torch.testing.assert_close(got, reference, atol=1e-5, rtol=0)
