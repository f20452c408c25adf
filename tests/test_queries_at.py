"""`AlbertModel(queries_at=...)`: the last layer at a few positions only (what pretraining losses read)
gives the numbers and gradients of the full last layer at those positions."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import TINY

import openalbert

QUERIES = torch.tensor([[0, 3, 5, 5], [0, 8, 1, 0], [0, 1, 2, 4]])  # (B, R), repeats allowed


def _batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(5, TINY["vocab_size"], (3, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 9:] = 0
    mask[2, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("positions", ["absolute", "relative_key", "relative_key_query"])
@pytest.mark.parametrize("implementation", ["auto", "sdpa"])  # auto: unpadded on the CPU (not with rkq)
@pytest.mark.parametrize("checkpointing", [False, True])
def test_last_layer_at_queries_equals_the_full_one_there(positions, implementation, checkpointing):
    torch.manual_seed(0)
    config = openalbert.AlbertConfig(
        **TINY | {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    )
    config.position_embedding_type = positions
    # float64, so that any difference is a mistake, not rounding; training mode: autograd, no dropout
    model = openalbert.AlbertModel(config).train().double()
    model.set_attn_implementation(implementation)
    model.encoder.gradient_checkpointing = checkpointing
    batch = _batch()
    weights = torch.randn(3, QUERIES.shape[1], TINY["hidden_size"], dtype=torch.float64)

    def run(**kwargs) -> tuple[openalbert.modeling.BaseModelOutputWithPooling, torch.Tensor, dict]:
        model.zero_grad()
        out = model(**batch, output_hidden_states=True, **kwargs)
        picked = out.last_hidden_state
        if "queries_at" not in kwargs:
            picked = picked.gather(1, QUERIES[..., None].expand(-1, -1, picked.shape[-1]))  # (B, R, H)
        ((picked * weights).sum() + out.pooler_output.sum()).backward()
        return out, picked, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    full, full_picked, full_grads = run()
    out, picked, grads = run(queries_at=QUERIES)
    assert picked.shape == (3, QUERIES.shape[1], TINY["hidden_size"])
    torch.testing.assert_close(picked, full_picked, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.pooler_output, full.pooler_output, rtol=1e-12, atol=1e-12)
    for a, b in zip(out.hidden_states[:-1], full.hidden_states[:-1]):
        torch.testing.assert_close(a, b)
    assert grads.keys() == full_grads.keys()
    for k in grads:
        torch.testing.assert_close(grads[k], full_grads[k], rtol=1e-10, atol=1e-12, msg=k)


@pytest.mark.parametrize("positions", ["absolute", "relative_key_query"])
def test_queries_at_without_autograd_take_the_fused_kernel_path(positions):
    # Without autograd the attention runs in PyTorch's fused kernel (as it always does on a GPU).
    config = openalbert.AlbertConfig(**TINY | {"position_embedding_type": positions})
    model = openalbert.AlbertModel(config).eval()
    model.set_attn_implementation("sdpa")
    with torch.no_grad():
        full = model(**_batch()).last_hidden_state
        picked = model(**_batch(), queries_at=QUERIES).last_hidden_state
    expected = full.gather(1, QUERIES[..., None].expand(-1, -1, full.shape[-1]))
    torch.testing.assert_close(picked, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"queries_at": torch.tensor([[0, 12]] * 3)}, "outside"),
        ({"queries_at": torch.tensor([0, 1])}, "batch, R"),
        ({"queries_at": torch.zeros(3, 2)}, "integer"),
        ({"queries_at": torch.zeros(3, 2, dtype=torch.long), "output_attentions": True}, "output_attentions"),
    ],
)
def test_bad_queries_are_refused(kwargs, message):
    model = openalbert.AlbertModel(openalbert.AlbertConfig(**TINY))
    with pytest.raises(ValueError, match=message):
        model(**_batch(), **kwargs)


@pytest.mark.parametrize("head", ["AlbertForSequenceClassification", "AlbertForMultipleChoice"])
def test_pooled_heads_run_the_last_layer_at_cls_only(head):
    """The heads that read only the pooled [CLS] vector compute the last layer there alone, unless the call
    wants every position's hidden states: the same logits and gradients either way."""
    torch.manual_seed(0)
    config = openalbert.AlbertConfig(
        **TINY | {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    )
    config.classifier_dropout_prob = 0.0  # training mode, so that gradients flow as in fine-tuning
    model = getattr(openalbert, head)(config)
    shapes = []
    layer = model.albert.encoder.albert_layer_groups[-1].albert_layers[-1]
    layer.register_forward_hook(lambda module, args, out: shapes.append(tuple(out[0].shape)))
    inputs = _batch()
    if head == "AlbertForMultipleChoice":
        inputs = {k: v.view(1, 3, -1) for k, v in inputs.items()}
    results = []
    for hidden in (False, True):
        model.zero_grad()
        shapes.clear()
        logits = model(**inputs, output_hidden_states=hidden).logits
        logits.pow(2).sum().backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
        # the last layer's queries: (3, 1, H) at [CLS], else every token ((N, H) unpadded, or (3, T, H))
        assert (shapes[-1] == (3, 1, config.hidden_size)) == (not hidden), shapes
    (a, grads_a), (b, grads_b) = results
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    for x, y in zip(grads_a, grads_b):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-4)
