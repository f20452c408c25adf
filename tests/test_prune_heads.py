"""Head pruning as transformers 4.57.1 does it: `prune_heads({layer: heads})` over the shared groups' inner
layers, recorded in config.pruned_heads, and pruned checkpoints that load both ways with the same numbers."""

from __future__ import annotations

import json

import pytest
import torch
from tests.conftest import TINY

import openalbert

transformers = pytest.importorskip("transformers")

PRUNE = {0: [0, 2], 1: [3], 3: [1, 2, 3]}  # TINY: 2 groups x 2 inner layers of 4 heads
HEADS = ["AlbertModel", "AlbertForMaskedLM", "AlbertForSequenceClassification", "AlbertForQuestionAnswering"]


def batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(5, TINY["vocab_size"], (3, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def outputs(model, **extra) -> list[torch.Tensor]:
    keep = batch()["attention_mask"].bool()
    with torch.no_grad():
        out = model(**batch(), **extra)
    tensors = [v for v in out.to_tuple() if isinstance(v, torch.Tensor)]
    # padded positions hold whatever each implementation leaves there: compare real tokens only
    return [t[keep] if t.dim() >= 2 and t.shape[:2] == keep.shape else t for t in tensors]


@pytest.mark.parametrize("head", HEADS)
def test_pruned_models_equal_transformers_both_ways(head, tmp_path):
    torch.manual_seed(0)
    theirs = getattr(transformers, head)(transformers.AlbertConfig(**TINY)).eval()
    theirs.save_pretrained(tmp_path / "full")
    ours = getattr(openalbert, head).from_pretrained(tmp_path / "full")
    ours.prune_heads(PRUNE)
    theirs.prune_heads(PRUNE)
    for a, b in zip(outputs(ours), outputs(theirs)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    layer = getattr(ours, "albert", ours).encoder.albert_layer_groups[1].albert_layers[1].attention
    assert layer.num_heads == 1 and layer.query.weight.shape == (
        TINY["hidden_size"] // 4,
        TINY["hidden_size"],
    )
    # a checkpoint pruned by transformers loads here, and ours loads in transformers
    theirs.save_pretrained(tmp_path / "theirs")
    ours.save_pretrained(tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["pruned_heads"] == {
        str(k): v for k, v in PRUNE.items()
    }
    reloaded = getattr(openalbert, head).from_pretrained(tmp_path / "theirs")
    theirs_reloaded = getattr(transformers, head).from_pretrained(tmp_path / "ours").eval()
    for a, b in zip(outputs(reloaded), outputs(theirs_reloaded)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_pruning_again_adds_heads_and_keeps_the_numbering(tmp_path):
    torch.manual_seed(0)
    theirs = transformers.AlbertModel(transformers.AlbertConfig(**TINY)).eval()
    theirs.save_pretrained(tmp_path / "full")
    ours = openalbert.AlbertModel.from_pretrained(tmp_path / "full")
    for step in ({0: [1]}, {0: [1, 3]}, {2: [0]}):  # head 3 keeps its number after head 1 went
        ours.prune_heads(step)
        theirs.prune_heads(step)
    assert (
        ours.config.pruned_heads
        == {0: [1, 3], 2: [0]}
        == {k: sorted(v) for k, v in theirs.config.pruned_heads.items()}
    )
    for a, b in zip(outputs(ours, output_hidden_states=True), outputs(theirs, output_hidden_states=True)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # every path: unpadded (the default on the CPU), padded SDPA, the last layer at a few queries
    for implementation in ("sdpa", "eager"):
        ours.set_attn_implementation(implementation)
        torch.testing.assert_close(outputs(ours)[0], outputs(theirs)[0], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="beyond the 4 shared layers"):
        ours.prune_heads({4: [0]})
    with pytest.raises(ValueError, match="every head of a layer"):
        ours.prune_heads({1: [0, 1, 2, 3]})


@pytest.mark.parametrize("cls", ["FlaxAlbertModel", "TFAlbertModel"])
def test_flax_and_tf_name_a_pruned_checkpoint(cls, tmp_path):
    pytest.importorskip("flax" if cls.startswith("Flax") else "tensorflow")
    model = openalbert.AlbertModel(openalbert.AlbertConfig(**TINY))
    model.prune_heads({0: [1]})
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"pruned attention heads \(config.pruned_heads = \{0: \[1\]\}\)"):
        getattr(openalbert, cls).from_pretrained(tmp_path)


def test_a_head_mask_weighs_the_heads_left_after_pruning(tmp_path):
    # as transformers' eager attention multiplies it; before, only a mask over the original heads was taken,
    # which fails on the pruned layer
    config = dict(TINY, num_hidden_groups=1, inner_group_num=1, num_attention_heads=4)
    torch.manual_seed(0)
    theirs = transformers.AlbertModel(transformers.AlbertConfig(**config)).eval()
    theirs.prune_heads({0: [1, 2]})
    theirs.save_pretrained(tmp_path)
    theirs = transformers.AlbertModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ours = openalbert.AlbertModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(5, TINY["vocab_size"], (2, 7), generator=torch.Generator().manual_seed(1))
    for mask in (torch.tensor([1.0, 0.0]), torch.tensor([[1.0, 0.5]] * TINY["num_hidden_layers"])):
        with torch.no_grad():
            torch.testing.assert_close(
                ours(ids, head_mask=mask).last_hidden_state, theirs(ids, head_mask=mask).last_hidden_state
            )
    with pytest.raises(ValueError, match=r"head_mask must have shape \(2,\) or \(4, 2\) \(the heads left"):
        ours(ids, head_mask=torch.ones(4))
