"""The JAX/Flax classes (openalbert.modeling_flax) against the PyTorch ones on the same checkpoints, and
against transformers 4.57.1's Flax ALBERT (parameter trees and outputs), for every head."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from tests.conftest import (
    FRAMEWORK_CASES,
    HEADS,
    TINY,
    B,
    T,
    assert_activations_match,
    assert_reheads,
    framework_config,
    framework_inputs,
    output_pairs,
)

import openalbert

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
import jax.numpy as jnp  # noqa: E402
from flax.traverse_util import flatten_dict  # noqa: E402

from openalbert import modeling_flax  # noqa: E402
from openalbert.checkpoint import FLAX_WEIGHTS_NAME  # noqa: E402


@pytest.mark.parametrize(("head", "position"), FRAMEWORK_CASES)
def test_flax_equals_pytorch_on_its_checkpoint(tmp_path, head, position):
    torch.manual_seed(0)
    torch_model = getattr(openalbert, head)(framework_config(position)).eval()
    torch_model.save_pretrained(tmp_path)
    flax_model = getattr(modeling_flax, f"Flax{head}").from_pretrained(tmp_path)
    batch = framework_inputs(head)
    with torch.no_grad():
        expected = torch_model(
            **{k: torch.tensor(v) for k, v in batch.items()},
            output_hidden_states=True,
            output_attentions=True,
        )
    got = flax_model(**batch, output_hidden_states=True, output_attentions=True)

    # Attention maps asked for: the PyTorch model keeps the padding (no unpadded path), so every position,
    # padding included, is compared.
    pairs = output_pairs(expected, got)
    assert {f.split("[")[0] for f, _, _ in pairs} >= {"hidden_states", "attentions"}
    for field, e, g in pairs:
        assert e.shape == g.shape, field
        np.testing.assert_allclose(g, e, atol=1e-5, rtol=0, err_msg=field)


@pytest.mark.parametrize("head", HEADS)
def test_parameter_trees_and_outputs_are_transformers_flax_ones(head):
    transformers = pytest.importorskip("transformers")
    config = transformers.AlbertConfig(**TINY | {"num_labels": 2}, hidden_act="gelu_new")
    theirs = getattr(transformers, f"Flax{head}")(config, seed=1)
    ours = getattr(modeling_flax, f"Flax{head}")(framework_config(), seed=0)
    shapes = lambda params: {k: v.shape for k, v in flatten_dict(params).items()}  # noqa: E731
    assert shapes(ours.params) == shapes(theirs.params)

    batch = framework_inputs(head)
    expected = theirs(**batch, output_hidden_states=True, output_attentions=True)
    got = ours(**batch, params=theirs.params, output_hidden_states=True, output_attentions=True)
    leaves = jax.tree_util.tree_leaves
    assert len(leaves(got.to_tuple())) == len(leaves(expected.to_tuple())) > 2
    for e, g in zip(leaves(expected.to_tuple()), leaves(got.to_tuple()), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), atol=1e-5, rtol=0)

    # the modules themselves, called as transformers' Flax code calls them (keywords, return_dict=False)
    inputs = batch | {"position_ids": np.broadcast_to(np.arange(T), batch["input_ids"].shape)}
    flags = dict(deterministic=True, output_hidden_states=True, return_dict=False)
    expected = theirs.module.apply({"params": theirs.params}, **inputs, **flags)
    got = ours.module.apply({"params": theirs.params}, **inputs, **flags)
    assert isinstance(got, tuple) and len(leaves(got)) == len(leaves(expected))
    for e, g in zip(leaves(expected), leaves(got), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), atol=1e-5, rtol=0)


def test_params_kept_apart_as_transformers_do_init_false_gives_them(tmp_path):
    model = modeling_flax.FlaxAlbertForMaskedLM(framework_config(), seed=3)
    model.save_pretrained(tmp_path / "a")
    bare, params = modeling_flax.FlaxAlbertForMaskedLM.from_pretrained(tmp_path / "a", _do_init=False)
    with pytest.raises(ValueError, match="_do_init=False"):
        bare.params  # noqa: B018
    batch = framework_inputs("AlbertForMaskedLM")
    np.testing.assert_array_equal(bare(**batch, params=params).logits, model(**batch).logits)
    shifted = jax.tree_util.tree_map(lambda p: p + 0.01, params)
    bare.save_pretrained(tmp_path / "b", params=shifted)
    again = modeling_flax.FlaxAlbertForMaskedLM.from_pretrained(tmp_path / "b")
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.allclose, again.params, shifted))
    _, _, info = modeling_flax.FlaxAlbertForMaskedLM.from_pretrained(
        tmp_path / "a", _do_init=False, output_loading_info=True
    )
    assert info["missing_keys"] == []


def test_save_pretrained_is_read_by_pytorch_and_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = modeling_flax.FlaxAlbertForPreTraining(framework_config(), seed=3)
    model.save_pretrained(tmp_path)
    batch = framework_inputs("AlbertForPreTraining")
    got = model(**batch)
    tensors = {k: torch.tensor(v) for k, v in batch.items()}
    for torch_model in (
        openalbert.AlbertForPreTraining.from_pretrained(tmp_path),
        transformers.AlbertForPreTraining.from_pretrained(tmp_path).eval(),
    ):
        with torch.no_grad():
            expected = torch_model(**tensors)
        real = batch["attention_mask"].astype(bool)  # openalbert's unpadded path leaves zeros at the padding
        np.testing.assert_allclose(
            np.asarray(got.prediction_logits)[real],
            expected.prediction_logits.numpy()[real],
            atol=1e-5,
            rtol=0,
        )
        np.testing.assert_allclose(got.sop_logits, expected.sop_logits.numpy(), atol=1e-5, rtol=0)
    again = modeling_flax.FlaxAlbertForPreTraining.from_pretrained(tmp_path)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, again.params, model.params))
    # The decoder's bias is saved under its own name too, as the TF classes save it: transformers' TF classes
    # (from_pt=True) read it there, and left it at zero before.
    from safetensors.numpy import load_file

    saved = load_file(tmp_path / "model.safetensors")
    np.testing.assert_array_equal(saved["predictions.decoder.bias"], saved["predictions.bias"])


def test_save_pretrained_shards_and_writes_a_bin_that_transformers_flax_reads(tmp_path):
    # transformers' save_pretrained options; before, refused
    transformers = pytest.importorskip("transformers")
    model = modeling_flax.FlaxAlbertForMaskedLM(framework_config(), seed=5)
    model.save_pretrained(tmp_path / "shards", max_shard_size="20KB")
    assert len(list((tmp_path / "shards").glob("model-*-of-*.safetensors"))) > 1
    assert (tmp_path / "shards" / "model.safetensors.index.json").is_file()
    model.save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["config.json", "pytorch_model.bin"]
    batch = framework_inputs("AlbertForMaskedLM")
    expected = np.asarray(model(**batch).logits)
    for directory in ("shards", "bin"):
        again = modeling_flax.FlaxAlbertForMaskedLM.from_pretrained(tmp_path / directory)
        np.testing.assert_array_equal(np.asarray(again(**batch).logits), expected, err_msg=directory)
    theirs = transformers.FlaxAlbertForMaskedLM.from_pretrained(tmp_path / "bin", from_pt=True)
    np.testing.assert_allclose(np.asarray(theirs(**batch).logits), expected, atol=1e-5, rtol=0)


def test_a_head_reads_a_bare_checkpoint_and_reports_its_fresh_weights(tmp_path, caplog):
    modeling_flax.FlaxAlbertModel(framework_config(), seed=4).save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="openalbert.modeling_flax"):
        model = modeling_flax.FlaxAlbertForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    assert "newly initialised: ['classifier.bias', 'classifier.weight']" in caplog.text
    bare = modeling_flax.FlaxAlbertModel.from_pretrained(tmp_path)
    same = jax.tree_util.tree_map(np.array_equal, model.params["albert"], bare.params)
    assert jax.tree_util.tree_all(same)  # the encoder is the checkpoint's, under the head's "albert" prefix
    assert model(**framework_inputs("AlbertModel")).logits.shape == (B, 3)
    assert_reheads(model, tmp_path / "three")  # 3 labels saved, 2 asked for


def test_training_step_lowers_the_masked_lm_loss():
    small = dict(num_hidden_layers=2, num_hidden_groups=1, inner_group_num=1)  # a smaller graph to compile
    model = modeling_flax.FlaxAlbertForMaskedLM(framework_config(**small), seed=5)
    batch = framework_inputs("AlbertForMaskedLM")
    labels = jnp.asarray(batch["input_ids"])

    def loss(params, rng):
        logits = model(**batch, params=params, dropout_rng=rng, train=True).logits
        picked = jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], axis=-1)
        return -(picked[..., 0] * batch["attention_mask"]).sum() / batch["attention_mask"].sum()

    step = jax.jit(jax.value_and_grad(loss))
    params, rng = model.params, jax.random.PRNGKey(0)
    losses = []
    for _ in range(20):
        rng, key = jax.random.split(rng)
        value, grads = step(params, key)
        params = jax.tree_util.tree_map(lambda p, g: p - 0.5 * g, params, grads)
        losses.append(float(value))
    assert losses[-1] < 0.8 * losses[0]
    # dropout is on with train=True: two keys give two results; off, the call is deterministic
    a, b = (model(**batch, dropout_rng=jax.random.PRNGKey(i), train=True).logits for i in (1, 2))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(model(**batch).logits, model(**batch).logits)


def test_bf16_computation_stays_close_to_fp32(tmp_path):
    modeling_flax.FlaxAlbertModel(framework_config(), seed=6).save_pretrained(tmp_path)
    fp32 = modeling_flax.FlaxAlbertModel.from_pretrained(tmp_path)
    bf16 = modeling_flax.FlaxAlbertModel.from_pretrained(tmp_path, dtype=jnp.bfloat16)
    batch = framework_inputs("AlbertModel")
    e, g = (
        np.asarray(m(**batch).last_hidden_state, dtype=np.float32).reshape(-1, TINY["hidden_size"])
        for m in (fp32, bf16)
    )
    cosine = (e * g).sum(-1) / np.linalg.norm(e, axis=-1) / np.linalg.norm(g, axis=-1)
    assert bf16(**batch).last_hidden_state.dtype == jnp.bfloat16 and cosine.min() > 0.999


def test_bf16_masked_lm_logits_come_out_in_the_dtype_transformers_gives():
    # its head adds the fp32 bias to the bf16 product: fp32 logits (before: bf16, the bias cast down)
    transformers = pytest.importorskip("transformers")
    batch = framework_inputs("AlbertForMaskedLM")
    for head in ("AlbertForMaskedLM", "AlbertForPreTraining", "AlbertForSequenceClassification"):
        ours = getattr(modeling_flax, f"Flax{head}")(framework_config(), dtype=jnp.bfloat16)(**batch)
        theirs = getattr(transformers, f"Flax{head}")(transformers.AlbertConfig(**TINY), dtype=jnp.bfloat16)(
            **batch
        )
        assert ours[0].dtype == theirs[0].dtype, head


def test_parameters_cast_to_half_precision_and_back():
    model = modeling_flax.FlaxAlbertModel(framework_config(), seed=8)
    leaves = jax.tree_util.tree_leaves
    half = model.to_bf16(model.params)
    assert {leaf.dtype for leaf in leaves(half)} == {jnp.dtype(jnp.bfloat16)}
    assert {leaf.dtype for leaf in leaves(model.to_fp32(half))} == {jnp.dtype(jnp.float32)}
    # a mask casts only where it says True: here everything but the LayerNorms
    mask = jax.tree_util.tree_map_with_path(lambda path, _: "LayerNorm" not in str(path), model.params)
    some = flatten_dict(model.to_fp16(model.params, mask))
    assert some["embeddings", "LayerNorm", "scale"].dtype == jnp.float32
    assert some["embeddings", "word_embeddings", "embedding"].dtype == jnp.float16
    batch = framework_inputs("AlbertModel")
    e, g = (np.asarray(model(**batch, params=p).last_hidden_state, np.float32) for p in (model.params, half))
    assert np.abs(e - g).max() < 0.1


def test_the_configs_output_flags_hold_where_the_call_gives_none():
    batch = framework_inputs("AlbertModel")
    flagged = modeling_flax.FlaxAlbertModel(
        framework_config(output_hidden_states=True, return_dict=False), seed=7
    )
    out = flagged(**batch)
    assert isinstance(out, tuple) and len(out[2]) == TINY["num_hidden_layers"] + 1
    assert flagged(**batch, return_dict=True).attentions is None


def test_inputs_a_user_can_get_wrong_raise_named_errors():
    model = modeling_flax.FlaxAlbertModel(framework_config(), seed=7)
    with pytest.raises(ValueError, match=r"input_ids holds 99, outside the valid range \[0, 98\]"):
        model(np.array([[1, 99]]))
    with pytest.raises(ValueError, match="sequence length 65 exceeds max_position_embeddings \\(64\\)"):
        model(np.ones((1, 65), dtype=np.int64))
    with pytest.raises(ValueError, match="dropout_rng"):
        model(np.array([[1, 2]]), train=True)
    with pytest.raises(ValueError, match="input_ids is required"):
        model(None)
    with pytest.raises(ValueError, match="input_ids is required"):
        model.module.apply({"params": model.params}, None)
    with pytest.raises(ValueError, match="tie_word_embeddings=false"):  # a decoder of its own
        modeling_flax.FlaxAlbertForMaskedLM(framework_config(extra={"tie_word_embeddings": False}), seed=7)(
            np.array([[1, 2]])
        )
    with pytest.raises(FileNotFoundError):
        modeling_flax.FlaxAlbertModel.from_pretrained("/no/such/dir")


def test_the_embedded_model_fills_masks_as_in_pytorch():
    # Real weights, relative positions: the default model's answers, its logits to 1e-4.
    tokenizer = openalbert.AlbertTokenizer.from_pretrained(openalbert.DEFAULT_MODEL)
    texts = ["The capital of France is [MASK].", "Plants make [MASK] from light, water and air."]
    batch = tokenizer(texts, padding=True, return_tensors="np")
    torch_model = openalbert.AlbertForMaskedLM.from_pretrained(openalbert.DEFAULT_MODEL)
    flax_model = modeling_flax.FlaxAlbertForMaskedLM.from_pretrained(openalbert.DEFAULT_MODEL)
    with torch.no_grad():
        expected = torch_model(**{k: torch.tensor(v) for k, v in batch.items()}).logits.numpy()
    got = np.asarray(flax_model(**batch).logits)
    at = batch["input_ids"] == tokenizer.mask_token_id
    assert at.sum() == 2
    np.testing.assert_allclose(got[at], expected[at], atol=1e-4, rtol=0)
    assert (got[at].argmax(-1) == expected[at].argmax(-1)).all()


def test_reads_what_transformers_flax_classes_save(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.AlbertConfig(**TINY, hidden_act="gelu_new")
    theirs = transformers.FlaxAlbertForMaskedLM(config, seed=2)
    theirs.save_pretrained(tmp_path)
    assert (tmp_path / FLAX_WEIGHTS_NAME).is_file() and not (tmp_path / "model.safetensors").exists()
    ours = modeling_flax.FlaxAlbertForMaskedLM.from_pretrained(tmp_path)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, ours.params, theirs.params))
    batch = framework_inputs("AlbertForMaskedLM")
    np.testing.assert_allclose(ours(**batch).logits, theirs(**batch).logits, atol=1e-5, rtol=0)

    # the PyTorch classes read it too
    with torch.no_grad():
        logits = openalbert.AlbertForMaskedLM.from_pretrained(tmp_path)(
            **{k: torch.tensor(v) for k, v in batch.items()}
        ).logits.numpy()
    real = batch["attention_mask"].astype(bool)  # openalbert's unpadded path leaves zeros at the padding
    np.testing.assert_allclose(logits[real], np.asarray(theirs(**batch).logits)[real], atol=1e-5, rtol=0)

    (tmp_path / FLAX_WEIGHTS_NAME).write_bytes(b"not msgpack")
    with pytest.raises(ValueError, match="flax_model.msgpack is corrupt or truncated"):
        modeling_flax.FlaxAlbertForMaskedLM.from_pretrained(tmp_path)


def test_reads_sharded_flax_checkpoints_as_transformers_writes_them(tmp_path):
    transformers = pytest.importorskip("transformers")
    theirs = transformers.FlaxAlbertForMaskedLM(
        transformers.AlbertConfig(**TINY, hidden_act="gelu_new"), seed=4
    )
    theirs.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (
        len(list(tmp_path.glob("flax_model-*.msgpack"))) > 2 and not (tmp_path / FLAX_WEIGHTS_NAME).exists()
    )
    ours = modeling_flax.FlaxAlbertForMaskedLM.from_pretrained(tmp_path)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, ours.params, theirs.params))
    torch_model, info = openalbert.AlbertForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == info["unexpected_keys"] == []
    embeddings = theirs.params["albert"]["embeddings"]["word_embeddings"]["embedding"]
    np.testing.assert_array_equal(torch_model.albert.embeddings.word_embeddings.weight.detach(), embeddings)
    next(tmp_path.glob("flax_model-*.msgpack")).unlink()
    with pytest.raises(FileNotFoundError, match="lists shard flax_model-"):
        modeling_flax.FlaxAlbertForMaskedLM.from_pretrained(tmp_path)


def test_hub_ids_from_the_offline_cache_flax_only_repos_too(tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    cache, commit = tmp_path / "hub", "0123456789abcdef0123456789abcdef01234567"
    theirs = transformers.FlaxAlbertForMaskedLM(transformers.AlbertConfig(**TINY), seed=3)
    torch.manual_seed(0)
    for repo_id, model in (
        ("someone/flax-only", theirs),
        ("someone/pytorch", openalbert.AlbertForMaskedLM(framework_config())),
    ):
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        model.save_pretrained(repo / "snapshots" / commit)
    sharded = cache / "models--someone--flax-sharded"
    (sharded / "refs").mkdir(parents=True)
    (sharded / "refs" / "main").write_text(commit)
    theirs.save_pretrained(sharded / "snapshots" / commit, max_shard_size="20KB")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    flax_only = modeling_flax.FlaxAlbertForMaskedLM.from_pretrained("someone/flax-only")
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, flax_only.params, theirs.params))
    from_shards = modeling_flax.FlaxAlbertForMaskedLM.from_pretrained("someone/flax-sharded")
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, from_shards.params, theirs.params))
    from_pytorch = modeling_flax.FlaxAlbertForMaskedLM.from_pretrained("someone/pytorch")
    assert from_pytorch(**framework_inputs("AlbertForMaskedLM")).logits.shape == (B, T, TINY["vocab_size"])
    with pytest.raises(FileNotFoundError, match="'someone/absent' was not found"):
        modeling_flax.FlaxAlbertForMaskedLM.from_pretrained("someone/absent")


def test_multiple_choice_drops_out_at_the_hidden_rate_as_transformers_flax():
    # transformers' Flax (and TF) multiple-choice head uses hidden_dropout_prob, its PyTorch one the classifier's
    only_classifier = framework_config(
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.5
    )
    batch = framework_inputs("AlbertForMultipleChoice")
    model = modeling_flax.FlaxAlbertForMultipleChoice(only_classifier, seed=0)
    trained = model(**batch, train=True, dropout_rng=jax.random.PRNGKey(0)).logits
    np.testing.assert_array_equal(np.asarray(trained), np.asarray(model(**batch).logits))


def test_init_weights_fills_what_params_lack_as_transformers_flax_classes():
    transformers = pytest.importorskip("transformers")
    model = modeling_flax.FlaxAlbertForSequenceClassification(framework_config(), seed=1)
    theirs = transformers.FlaxAlbertForSequenceClassification(transformers.AlbertConfig(**TINY, num_labels=2))
    assert model.required_params == theirs.required_params
    shapes = jax.tree_util.tree_map(lambda leaf: leaf.shape, model.params_shape_tree)
    assert shapes == jax.tree_util.tree_map(lambda leaf: leaf.shape, model.params)
    partial = {k: v for k, v in model.params.items() if k != "classifier"}
    filled = model.init_weights(model.key, model.input_shape, partial)
    assert set(flatten_dict(filled)) == model.required_params
    np.testing.assert_array_equal(
        filled["albert"]["embeddings"]["word_embeddings"]["embedding"],
        model.params["albert"]["embeddings"]["word_embeddings"]["embedding"],
    )
    with pytest.raises(NotImplementedError, match="upload_folder"):
        model.push_to_hub("someone/model")


def test_every_activation_is_transformers_one():
    assert_activations_match(modeling_flax.ACT2FN, jnp.asarray)


def test_a_save_over_transformers_flax_weights_replaces_them(tmp_path):
    # transformers' Flax classes read flax_model.msgpack first: left beside the new model.safetensors, it
    # gave them the old weights, silently.
    transformers = pytest.importorskip("transformers")
    transformers.FlaxAlbertForMaskedLM(transformers.AlbertConfig(**TINY)).save_pretrained(tmp_path)
    assert (tmp_path / "flax_model.msgpack").is_file()
    model = modeling_flax.FlaxAlbertForMaskedLM(framework_config(), seed=5)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    again = transformers.FlaxAlbertForMaskedLM.from_pretrained(tmp_path, from_pt=True)
    batch = framework_inputs("AlbertForMaskedLM")
    real = batch["attention_mask"].astype(bool)
    np.testing.assert_allclose(
        np.asarray(again(**batch).logits)[real], np.asarray(model(**batch).logits)[real], atol=1e-5, rtol=0
    )
