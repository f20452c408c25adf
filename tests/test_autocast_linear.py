"""CPU training under bf16 autocast on packed weights (linear.autocast_linear): each shared weight is cast and
packed once per forward pass, q/k/v run as one GEMM, and the weights' gradients are summed over the layers
inside their GEMMs. The reference is PyTorch's own autocast path (the same model with the packed path off),
and fp32 for how close both are to the truth."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from tests.conftest import TINY

import openalbert
from openalbert import linear

pytestmark = pytest.mark.skipif(
    not (linear._MKLDNN_BF16 and linear._AVX512), reason="needs oneDNN's bf16 GEMMs (AVX-512)"
)
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0)


@pytest.fixture
def stock(monkeypatch):
    """Turns the packed path off (PyTorch's autocast GEMMs) while the fixture's context is active."""

    class Switch:
        def __enter__(self) -> None:
            monkeypatch.setattr(linear, "autocast_packs_serve", lambda *a: False)

        def __exit__(self, *exc: object) -> None:
            monkeypatch.undo()

    return Switch()


def _batch() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(5, TINY["vocab_size"], (3, 13), generator=gen)
    labels = ids.masked_fill(torch.rand(ids.shape, generator=gen) > 0.3, -100)
    return {"input_ids": ids, "token_type_ids": torch.zeros_like(ids)}, labels


def _grads(model: torch.nn.Module, autocast: bool = True) -> tuple[float, torch.Tensor]:
    """Loss and flat gradient of one MLM step."""
    batch, labels = _batch()
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(**batch, labels=labels).loss
    loss.backward()
    return float(loss.detach()), torch.cat(
        [p.grad.flatten() for p in model.parameters() if p.grad is not None]
    )


def _model(position: str = "absolute") -> openalbert.AlbertForMaskedLM:
    torch.manual_seed(0)
    config = openalbert.AlbertConfig(**TINY | NO_DROPOUT, position_embedding_type=position)
    return openalbert.AlbertForMaskedLM(config).train()


def test_shared_linear_sums_its_gradients_over_the_layers():
    gen = torch.Generator().manual_seed(0)
    layer = linear.Linear(48, 48)
    layer.reused = True  # as AlbertLayer marks its layers
    x = torch.randn(2, 7, 48, generator=gen, requires_grad=True)
    grad = torch.randn(2, 7, 48, generator=gen)

    def run() -> tuple[torch.Tensor, ...]:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            linear.new_pass()
            h = x
            for _ in range(3):  # one weight, three uses: ALBERT's sharing
                h = layer(h)
        h.backward(grad)
        return h.float(), x.grad, layer.weight.grad, layer.bias.grad

    out, dx, dw, db = run()
    assert "_autocast_pack" in layer.__dict__  # the packed path ran
    assert dw.dtype == db.dtype == torch.float32
    # float64 through the same three uses: bf16 rounding only (operands, each layer's output, the sums)
    w, b = layer.weight.detach().double().requires_grad_(), layer.bias.detach().double().requires_grad_()
    x64 = x.detach().double().requires_grad_()
    h = x64
    for _ in range(3):
        h = F.linear(h, w, b)
    h.backward(grad.double())
    for ours, exact in ((out, h), (dx, x64.grad), (dw, w.grad), (db, b.grad)):
        assert F.cosine_similarity(ours.double().flatten(), exact.detach().flatten(), dim=0) > 0.9998


@pytest.mark.parametrize("position", ["absolute", "relative_key"])
def test_training_step_matches_pytorchs_autocast(stock, position):
    model = _model(position)
    loss, grad = _grads(model)
    assert "_autocast_pack" in model.albert.encoder.albert_layer_groups[0].albert_layers[0].attention.__dict__
    with stock:
        stock_loss, stock_grad = _grads(model)
    fp32_loss, fp32_grad = _grads(model, autocast=False)
    assert abs(loss - stock_loss) < 1e-2 * abs(stock_loss)
    assert F.cosine_similarity(grad, stock_grad, dim=0) > 0.9995
    ours, theirs = (F.cosine_similarity(g, fp32_grad, dim=0) for g in (grad, stock_grad))
    assert ours >= theirs - 2e-4


def test_only_the_shared_layers_pack_their_weights():
    # A weight used once per pass (the MLM head, the embedding projection) is cheaper through PyTorch's
    # autocast GEMM than packed; so are the layers of a model that shares none.
    model = _model()
    _grads(model)
    layer = model.albert.encoder.albert_layer_groups[0].albert_layers[0]
    for module in (layer.attention, layer.ffn, layer.ffn_output, layer.attention.dense):
        assert "_autocast_pack" in module.__dict__
    once = (
        model.predictions.decoder,
        model.predictions.dense,
        model.albert.encoder.embedding_hidden_mapping_in,
    )
    assert not any("_autocast_pack" in module.__dict__ for module in once)

    unshared = openalbert.AlbertForMaskedLM(
        openalbert.AlbertConfig(**TINY | NO_DROPOUT | {"num_hidden_groups": TINY["num_hidden_layers"]})
    ).train()
    _grads(unshared)
    for group in unshared.albert.encoder.albert_layer_groups:
        assert not any("_autocast_pack" in m.__dict__ for m in group.modules())

    # pruning heads makes new projections, which stay shared
    model.prune_heads({0: [0]})
    layer.attention.__dict__.pop("_autocast_pack")
    _grads(model)
    assert "_autocast_pack" in layer.attention.__dict__ and layer.attention.query.reused


def test_fused_adamw_steps_are_seen_by_the_next_pass(stock):
    # A fused optimizer changes the weights without bumping their version, and a layer used outside
    # AlbertModel starts no new pass: the copy of a pass whose backward has run must not serve again.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 32, generator=gen)
    layers = [linear.Linear(32, 32) for _ in range(2)]
    layers[1].load_state_dict(layers[0].state_dict())
    for layer in layers:
        layer.reused = True
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-1, fused=True) for m in layers]
    outs = []
    for _ in range(3):
        pair = []
        for layer, opt, off in zip(layers, opts, (False, True)):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                if off:
                    with stock:
                        out = layer(layer(x))
                else:
                    out = layer(layer(x))
            out.float().square().mean().backward()
            opt.step()
            opt.zero_grad()
            pair.append(out.detach().float())
        outs.append(pair)
    assert "_autocast_pack" in layers[0].__dict__
    assert (outs[0][0] - outs[-1][0]).abs().max() > 0.1  # it moved, so a stale copy would show
    for ours, theirs in outs:
        torch.testing.assert_close(ours, theirs, rtol=2e-2, atol=2e-2)


def test_accumulated_retained_and_checkpointed_backward_passes():
    model = _model()
    batch, labels = _batch()
    _, once = _grads(model)

    # two micro-batches accumulate: twice the gradient
    model.zero_grad(set_to_none=True)
    for _ in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(**batch, labels=labels).loss.backward()
    twice = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    torch.testing.assert_close(twice, 2 * once, rtol=2e-2, atol=1e-5)

    # a retained graph: an input-only gradient first leaves the weights' sums alone, then two backward passes
    model.zero_grad(set_to_none=True)
    embeds = model.albert.embeddings.word_embeddings(batch["input_ids"]).detach().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(inputs_embeds=embeds, token_type_ids=batch["token_type_ids"], labels=labels).loss
    (d_embeds,) = torch.autograd.grad(loss, embeds, retain_graph=True)
    assert d_embeds.abs().sum() > 0
    loss.backward(retain_graph=True)
    loss.backward()
    again = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    ref = copy.deepcopy(model)
    ref.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref(
            inputs_embeds=embeds.detach(), token_type_ids=batch["token_type_ids"], labels=labels
        ).loss.backward()
    single = torch.cat([p.grad.flatten() for p in ref.parameters() if p.grad is not None])
    torch.testing.assert_close(again, 2 * single, rtol=2e-2, atol=1e-5)

    # gradient checkpointing recomputes the layers in the backward: the same gradient
    model.gradient_checkpointing_enable()
    _, checkpointed = _grads(model)
    assert F.cosine_similarity(checkpointed, once, dim=0) > 0.99999
