"""Every head, both directions, against transformers 4.57.1 on tiny random checkpoints saved by it."""

from __future__ import annotations

import json

import pytest
import torch
from tests.conftest import HEADS, TINY, assert_activations_match

import openalbert
from openalbert import linear

transformers = pytest.importorskip("transformers")

B, T, N = 3, 11, 2


def inputs(head: str, num_labels: int = 2, problem_type: str | None = None, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    shape = (B, N, T) if head == "AlbertForMultipleChoice" else (B, T)
    ids = torch.randint(5, TINY["vocab_size"], shape, generator=g)
    mask = torch.ones(shape, dtype=torch.long)
    mask[..., 0, 7:] = 0 if head == "AlbertForMultipleChoice" else 1  # padded rows in both layouts
    mask[1, ..., 5:] = 0
    types = torch.zeros(shape, dtype=torch.long)
    types[..., 4:] = 1
    out = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    if head == "AlbertForPreTraining":
        labels = torch.full((B, T), -100)
        labels[:, 2:5] = ids[:, 2:5]
        out |= {"labels": labels, "sentence_order_label": torch.tensor([0, 1, 1])}
    elif head == "AlbertForMaskedLM":
        labels = torch.full((B, T), -100)
        labels[:, ::3] = ids[:, ::3]
        out["labels"] = labels
    elif head == "AlbertForSequenceClassification":
        if problem_type == "regression":
            out["labels"] = torch.randn(B, generator=g)
        elif problem_type == "multi_label_classification":
            out["labels"] = torch.randint(0, 2, (B, num_labels), generator=g).float()
        else:
            out["labels"] = torch.randint(0, num_labels, (B,), generator=g)
    elif head == "AlbertForTokenClassification":
        out["labels"] = torch.randint(0, num_labels, (B, T), generator=g)
    elif head == "AlbertForQuestionAnswering":
        # The last position lies outside the window and must be ignored by both.
        out |= {"start_positions": torch.tensor([1, 3, 40]), "end_positions": torch.tensor([2, 6, 40])}
    elif head == "AlbertForMultipleChoice":
        out["labels"] = torch.tensor([0, 1, 1])
    return out


def assert_same(ours, theirs, atol: float = 1e-5) -> None:
    keys = [k for k in theirs if theirs[k] is not None]
    assert sorted(keys) == sorted(ours.keys()), (keys, ours.keys())
    for key in keys:
        a, b = ours[key], theirs[key]
        if isinstance(b, tuple):
            assert len(a) == len(b), key
            for x, y in zip(a, b):
                torch.testing.assert_close(x, y, atol=atol, rtol=0, msg=key)
        else:
            torch.testing.assert_close(a, b, atol=atol, rtol=0, msg=key)


def real_only(out, batch: dict) -> dict:
    """Zero every per-token output at the padding, where the default unpadded path leaves zeros."""
    keep = batch["attention_mask"]
    keep = keep.reshape(-1, keep.shape[-1])  # multiple choice: (B * N, T)

    def mask(x):
        if isinstance(x, tuple):
            return tuple(mask(t) for t in x)
        if tuple(x.shape[:2]) == tuple(keep.shape):  # (B, T, ...): one row per token
            return x * keep.view(*keep.shape, *[1] * (x.dim() - 2)).to(x.dtype)
        return x

    return {k: mask(out[k]) for k in out if out[k] is not None}


def unpadded_labels(batch: dict) -> dict:
    """Labels only on real tokens, as every data collator makes them."""
    keep = batch["attention_mask"] != 0
    batch = dict(batch)
    for name in ("labels",):
        if name in batch and batch[name].shape == keep.shape:
            batch[name] = batch[name].masked_fill(~keep, -100)
    if "start_positions" in batch:
        batch["end_positions"] = torch.tensor([2, 4, 40])
    return batch


def build_reference(head: str, tmp_path, **overrides):
    torch.manual_seed(1234)
    config = transformers.AlbertConfig(**(TINY | overrides))
    ref = getattr(transformers, head)(config).eval()
    ref.save_pretrained(tmp_path)
    return ref


CASES = [
    ("gelu_new", "absolute", None, 2),
    ("gelu", "relative_key", None, 3),
    ("relu", "relative_key_query", None, 2),
    ("silu", "absolute", "regression", 1),
    ("gelu_new", "absolute", "multi_label_classification", 4),
]


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("act,positions,problem_type,num_labels", CASES)
def test_their_checkpoint_our_model(tmp_path, head, act, positions, problem_type, num_labels):
    if head in ("AlbertForPreTraining", "AlbertForQuestionAnswering"):
        num_labels = 2  # sentence order and start/end are two-way whatever the task config says
    overrides = dict(hidden_act=act, position_embedding_type=positions, num_labels=num_labels)
    if problem_type:
        overrides["problem_type"] = problem_type
    ref = build_reference(head, tmp_path, **overrides)
    ours = getattr(openalbert, head).from_pretrained(tmp_path, strict=True)
    assert not ours.training
    batch = inputs(head, num_labels, problem_type)
    if head == "AlbertModel":
        batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    # transformers' layout: every position computed, padding included.
    ours.set_attn_implementation("sdpa")
    for extra in ({}, {"output_hidden_states": True, "output_attentions": True}):
        with torch.no_grad():
            expected = ref(**batch, **extra)
            got = ours(**batch, **extra)
        assert_same(got, expected)
    n_layers = TINY["num_hidden_layers"]
    assert len(got.hidden_states) == n_layers + 1
    assert len(got.attentions) == n_layers * TINY["inner_group_num"]
    # The default skips the padding: the same numbers on every real token, zeros at the padding.
    ours.set_attn_implementation("unpadded")
    batch = unpadded_labels(batch)
    with torch.no_grad():
        expected = ref(**batch, output_hidden_states=True)
        got = ours(**batch, output_hidden_states=True)
    got, expected = real_only(got, batch), real_only(expected, batch)
    if head == "AlbertForQuestionAnswering":
        # Its span softmax runs over every position, padding included, whose logits differ (see README).
        del got["loss"], expected["loss"]
    assert_same(got, expected)


@pytest.mark.parametrize("head", HEADS)
def test_our_checkpoint_their_model(tmp_path, head):
    torch.manual_seed(7)
    ours = getattr(openalbert, head)(openalbert.AlbertConfig(**TINY)).eval()
    ours.save_pretrained(tmp_path)
    ref = getattr(transformers, head).from_pretrained(tmp_path).eval()
    batch = unpadded_labels(inputs(head))
    if head == "AlbertModel":
        batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        got = real_only(ours(**batch, output_hidden_states=True), batch)
        expected = real_only(ref(**batch, output_hidden_states=True), batch)
    if head == "AlbertForQuestionAnswering":
        del got["loss"], expected["loss"]
    assert_same(got, expected)
    # Nothing was freshly initialised by transformers: it found every weight it needed.
    _, info = getattr(transformers, head).from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []


@pytest.mark.parametrize("layers,groups", [(3, 2), (18, 14)])
def test_layers_not_a_multiple_of_the_groups(tmp_path, layers, groups):
    # 18 layers in 14 groups: transformers' float arithmetic runs group 6 at layer 9 where 9 * 14 // 18 is 7.
    # One layer per group: transformers indexes past its head-mask slice with more.
    ref = build_reference(
        "AlbertModel", tmp_path, num_hidden_layers=layers, num_hidden_groups=groups, inner_group_num=1
    )
    ours = openalbert.AlbertModel.from_pretrained(tmp_path)
    batch = inputs("AlbertModel")
    with torch.no_grad():
        got = real_only(ours(**batch, output_hidden_states=True), batch)
        expected = real_only(ref(**batch, output_hidden_states=True), batch)
    assert_same(got, expected)


def test_tuple_outputs_match(tmp_path):
    ref = build_reference("AlbertForPreTraining", tmp_path)
    ours = openalbert.AlbertForPreTraining.from_pretrained(tmp_path, attn_implementation="sdpa")
    batch = inputs("AlbertForPreTraining")
    with torch.no_grad():
        a = ours(**batch, return_dict=False)
        b = ref(**batch, return_dict=False)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)


def test_parameters_come_in_transformers_order():
    # an optimizer's state, saved beside a transformers model, is matched to parameters by index
    for head in HEADS:
        ours = [n for n, _ in getattr(openalbert, head)(openalbert.AlbertConfig(**TINY)).named_parameters()]
        theirs = [
            n for n, _ in getattr(transformers, head)(transformers.AlbertConfig(**TINY)).named_parameters()
        ]
        assert ours == theirs, head


def test_from_pretrained_takes_the_classes_own_arguments(tmp_path):
    ref = build_reference("AlbertModel", tmp_path)
    ours = openalbert.AlbertModel.from_pretrained(
        tmp_path, add_pooling_layer=False, attn_implementation="sdpa"
    )
    theirs = transformers.AlbertModel.from_pretrained(tmp_path, add_pooling_layer=False).eval()
    assert ours.pooler is None and ref.pooler is not None
    batch = inputs("AlbertModel")
    with torch.no_grad():
        a, b = ours(**batch, return_dict=False), theirs(**batch, return_dict=False)
    assert len(a) == len(b) == 2 and a[1] is None and b[1] is None  # the pooler's place kept
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=0)
    # id2label alone sets the number of labels, and the saved config does not record where it came from
    classifier = openalbert.AlbertForSequenceClassification.from_pretrained(
        tmp_path, id2label={0: "a", 1: "b", 2: "c"}
    )
    assert classifier.classifier.out_features == 3 == classifier.config.num_labels
    classifier.save_pretrained(tmp_path / "saved")
    assert "_name_or_path" not in json.loads((tmp_path / "saved" / "config.json").read_text())
    assert classifier.name_or_path == str(tmp_path)


def test_outputs_read_as_transformers_dicts(tmp_path):
    ref = build_reference("AlbertForSequenceClassification", tmp_path)
    ours = openalbert.AlbertForSequenceClassification.from_pretrained(tmp_path, attn_implementation="sdpa")
    batch = inputs("AlbertForSequenceClassification")
    with torch.no_grad():
        a, b = ours(**batch), ref(**batch)
    assert len(a) == len(b) and list(a.keys()) == list(b.keys())
    for (ka, va), (kb, vb), v in zip(a.items(), b.items(), a.values()):
        assert ka == kb and v is va
        torch.testing.assert_close(va, vb, atol=1e-5, rtol=0)
    assert a.get("attentions") is None is b.get("attentions") and a.get("logits") is a.logits
    a["logits"] = a.logits * 2
    torch.testing.assert_close(a[1], b[1] * 2, atol=1e-5, rtol=0)


def test_outputs_are_ordered_dicts_that_rebuild_from_their_pairs(tmp_path):
    import copy
    import pickle
    from collections import OrderedDict

    from transformers.trainer_pt_utils import nested_detach

    ref = build_reference("AlbertForMaskedLM", tmp_path)
    ours = openalbert.AlbertForMaskedLM.from_pretrained(tmp_path)
    batch = inputs("AlbertForMaskedLM")
    with torch.no_grad():
        a, b = ours(**batch), ref(**batch)
    assert isinstance(a, OrderedDict) and isinstance(b, OrderedDict) and list(dict(a)) == list(dict(b))
    # what tf.nest, dm-tree, DataParallel and transformers' Trainer do to carry an output through
    for rebuilt in (type(a)((k, v) for k, v in a.items()), type(a)(dict(a)), nested_detach(a)):
        assert type(rebuilt) is type(a) and list(rebuilt.keys()) == list(a.keys())
        assert rebuilt.loss is not None and rebuilt.hidden_states is None and rebuilt[1] is rebuilt.logits
    with pytest.raises(TypeError, match="no field 'scores'"):
        type(a)([("scores", a.logits)])
    for copied in (pickle.loads(pickle.dumps(a)), copy.deepcopy(a)):
        assert list(copied.keys()) == list(a.keys())
        torch.testing.assert_close(copied.logits, a.logits)
    # a field set after the fact joins the dict in field order; a None one leaves it
    a.hidden_states = (a.logits,)
    assert list(a.keys()) == ["loss", "logits", "hidden_states"] and a[2] == (a.logits,)
    a["loss"] = None
    assert list(a.keys()) == ["logits", "hidden_states"] and a[0] is a.logits
    with pytest.raises(TypeError, match="set them by name"):
        a.pop("logits")


@pytest.mark.parametrize(
    "head", ["AlbertForMaskedLM", "AlbertForQuestionAnswering", "AlbertForMultipleChoice"]
)
def test_torch_export_and_compile_trace_a_padded_batch_in_one_graph(head):
    torch.manual_seed(0)
    model = getattr(openalbert, head)(openalbert.AlbertConfig(**TINY)).eval()
    batch = inputs(head)
    with torch.no_grad():
        # "auto" skips the padding in eager mode; a traced graph's shapes cannot depend on the mask, so
        # there it computes every position, as "sdpa" does
        model.set_attn_implementation("sdpa")
        expected = model(**batch)
        model.set_attn_implementation("auto")
        exported = torch.export.export(model, (), batch).module()(**batch)
        compiled = torch.compile(model, fullgraph=True, backend="eager")(**batch)
    for got in (exported, compiled):
        assert type(got) is type(expected) and list(got.keys()) == list(expected.keys())
        assert_same(got, expected)


def test_a_new_output_embedding_brings_its_bias(tmp_path):
    model = openalbert.AlbertForMaskedLM(openalbert.AlbertConfig(**TINY))
    decoder = torch.nn.Linear(TINY["embedding_size"], TINY["vocab_size"])
    torch.nn.init.constant_(decoder.bias, 5.0)
    model.set_output_embeddings(decoder)
    model.tie_weights()
    assert model.predictions.bias is decoder.bias
    model.save_pretrained(tmp_path)
    again, info = openalbert.AlbertForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert torch.all(again.predictions.bias == 5.0) and torch.all(again.predictions.decoder.bias == 5.0)
    assert info["error_msgs"] == [] and info["missing_keys"] == []
    theirs = transformers.AlbertForMaskedLM.from_pretrained(tmp_path)
    assert torch.all(theirs.predictions.decoder.bias == 5.0)


def test_save_pretrained_takes_a_state_dict_and_the_main_process_flag(tmp_path):
    model = openalbert.AlbertModel(openalbert.AlbertConfig(**TINY))
    model.save_pretrained(tmp_path / "not-main", is_main_process=False)
    assert not (tmp_path / "not-main").exists()
    state = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    model.save_pretrained(tmp_path / "given", state_dict=state)
    loaded = openalbert.AlbertModel.from_pretrained(tmp_path / "given")
    assert all(not v.any() for v in loaded.state_dict().values())
    assert loaded.config.architectures == [
        "AlbertModel"
    ]  # a key the config keeps unmodelled, as an attribute


def test_head_mask_and_inputs_embeds(tmp_path):
    # transformers applies head_mask only in its eager attention; a 1-D mask is the same for every layer.
    torch.manual_seed(3)
    config = transformers.AlbertConfig(
        **(TINY | dict(num_hidden_groups=1, inner_group_num=1)), attn_implementation="eager"
    )
    ref = transformers.AlbertModel(config).eval()
    ref.save_pretrained(tmp_path)
    ours = openalbert.AlbertModel.from_pretrained(tmp_path)
    batch = inputs("AlbertModel")
    head_mask = torch.tensor([1.0, 0.0, 1.0, 0.5])
    with torch.no_grad():
        assert_same(
            ours(input_ids=batch["input_ids"], head_mask=head_mask),
            ref(input_ids=batch["input_ids"], head_mask=head_mask),
        )
        embeds = ours.embeddings.word_embeddings(batch["input_ids"])
        assert_same(
            real_only(ours(inputs_embeds=embeds, attention_mask=batch["attention_mask"]), batch),
            real_only(ref(inputs_embeds=embeds, attention_mask=batch["attention_mask"]), batch),
        )


@pytest.mark.parametrize("head", ["AlbertForPreTraining", "AlbertForMaskedLM"])
def test_training_mode_gradients_match(tmp_path, head):
    # Without dropout, a backward pass gives the same loss, logits and gradients as the reference (the MLM
    # loss projects only the labelled positions while training on the CPU).
    ref = build_reference(
        head, tmp_path, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0
    )
    ours = getattr(openalbert, head).from_pretrained(tmp_path).train()
    ref.train()
    batch = unpadded_labels(inputs(head))
    mine, theirs_out = ours(**batch), ref(**batch)
    torch.testing.assert_close(mine.loss, theirs_out.loss, atol=1e-5, rtol=1e-5)
    logits = "logits" if head == "AlbertForMaskedLM" else "prediction_logits"
    torch.testing.assert_close(
        real_only(mine, batch)[logits], real_only(theirs_out, batch)[logits], atol=1e-5, rtol=0
    )
    assert mine[logits].requires_grad  # the returned logits are still differentiable
    mine.loss.backward()
    theirs_out.loss.backward()
    theirs = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, theirs[name].grad, atol=1e-5, rtol=1e-4, msg=name)
    # No labelled position: NaN, as transformers gives.
    batch["labels"] = torch.full_like(batch["labels"], -100)
    assert torch.isnan(ours(**batch).loss) and torch.isnan(ref(**batch).loss)


def test_every_activation_transformers_has_reads_and_runs(tmp_path):
    # transformers' ACT2FN names but prelu and xielu (weights of their own): a checkpoint with any of them
    # was refused before.
    assert_activations_match(linear.ACT2FN, torch.as_tensor)
    ref = build_reference("AlbertModel", tmp_path, hidden_act="gelu_10")
    ours = openalbert.AlbertModel.from_pretrained(tmp_path, strict=True)
    batch = inputs("AlbertModel", 2, None)
    batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    ours.set_attn_implementation("sdpa")
    with torch.no_grad():
        assert_same(ours(**batch), ref(**batch))
    with pytest.raises(ValueError, match="hidden_act 'prelu' is not supported"):
        openalbert.AlbertConfig(hidden_act="prelu")


def test_transformers_model_helpers_give_the_same_results():
    # can_generate, init_weights, dummy_inputs, config_class and the ModuleUtilsMixin mask helpers were missing
    config = transformers.AlbertConfig(**TINY)
    theirs = transformers.AlbertForMaskedLM(config).eval()
    ours = openalbert.AlbertForMaskedLM(openalbert.AlbertConfig(**TINY)).eval()
    assert ours.can_generate() is theirs.can_generate() is False
    assert ours.config_class is openalbert.AlbertConfig
    assert torch.equal(ours.dummy_inputs["input_ids"], theirs.dummy_inputs["input_ids"])
    g = torch.Generator().manual_seed(0)
    for mask in (torch.randint(0, 2, (3, 7), generator=g), torch.randint(0, 2, (3, 7, 7), generator=g)):
        torch.testing.assert_close(
            ours.get_extended_attention_mask(mask, (3, 7)), theirs.get_extended_attention_mask(mask, (3, 7))
        )
        torch.testing.assert_close(ours.invert_attention_mask(mask), theirs.invert_attention_mask(mask))
    layers, heads = TINY["num_hidden_layers"], TINY["num_attention_heads"]
    for head_mask in (torch.rand(heads, generator=g), torch.rand(layers, heads, generator=g), None):
        for chunked in (False, True):
            a = ours.get_head_mask(head_mask, layers, chunked)
            b = theirs.get_head_mask(head_mask, layers, chunked)
            assert a == b if head_mask is None else torch.equal(a, b)
    before = ours.predictions.dense.weight.clone()
    ours.init_weights()
    assert not torch.equal(ours.predictions.dense.weight, before)
    assert ours.predictions.decoder.weight is ours.albert.embeddings.word_embeddings.weight
    for model in (ours, theirs):
        model.prune_heads({0: [1]})
    attention = [m.albert.encoder.albert_layer_groups[0].albert_layers[0].attention for m in (ours, theirs)]
    for name in ("num_attention_heads", "attention_head_size", "all_head_size"):
        assert getattr(attention[0], name) == getattr(attention[1], name), name
    ids = torch.tensor([[5, 6, 0, 0]])
    with pytest.warns(UserWarning, match="padding and no attention_mask"):
        ours.warn_if_padding_and_no_attention_mask(ids, None)
