"""The TensorFlow classes (openalbert.modeling_tf) against the PyTorch ones on the same checkpoints, and
against transformers 4.57.1's TF ALBERT (its tf_model.h5, outputs and losses), for every head."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from safetensors import safe_open
from tests.conftest import (
    FRAMEWORK_CASES,
    HEADS,
    TINY,
    B,
    N,
    T,
    assert_activations_match,
    assert_reheads,
    framework_config,
    framework_inputs,
    output_pairs,
    spiece_or_skip,
)

import openalbert

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")

from openalbert import modeling_tf  # noqa: E402
from openalbert.checkpoint import TF2_WEIGHTS_NAME  # noqa: E402


def _labels(head: str, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    tokens = rng.randint(0, TINY["vocab_size"], (B, T))
    tokens[:, ::2] = -100  # not predicted
    return {
        "AlbertModel": {},
        "AlbertForPreTraining": {"labels": tokens, "sentence_order_label": rng.randint(0, 2, (B,))},
        "AlbertForMaskedLM": {"labels": tokens},
        "AlbertForSequenceClassification": {"labels": rng.randint(0, 2, (B,))},
        "AlbertForTokenClassification": {"labels": np.where(tokens < 0, -100, tokens % 2)},
        "AlbertForQuestionAnswering": {
            "start_positions": rng.randint(0, T, (B,)),
            "end_positions": rng.randint(0, T, (B,)),
        },
        "AlbertForMultipleChoice": {"labels": rng.randint(0, N, (B,))},
    }[head]


@pytest.mark.parametrize(("head", "position"), FRAMEWORK_CASES)
def test_tf_equals_pytorch_on_its_checkpoint(tmp_path, head, position):
    torch.manual_seed(0)
    torch_model = getattr(openalbert, head)(framework_config(position)).eval()
    torch_model.save_pretrained(tmp_path)
    tf_model = getattr(modeling_tf, f"TF{head}").from_pretrained(tmp_path)
    assert tf_model.count_params() == sum(p.numel() for p in torch_model.parameters())  # the decoder tied
    batch = framework_inputs(head)
    with torch.no_grad():
        expected = torch_model(
            **{k: torch.tensor(v) for k, v in batch.items()},
            output_hidden_states=True,
            output_attentions=True,
        )
    got = tf_model(
        batch, output_hidden_states=True, output_attentions=True
    )  # inputs as one dict, as Keras passes

    # Attention maps asked for: the PyTorch model keeps the padding (no unpadded path), so every position,
    # padding included, is compared.
    pairs = output_pairs(expected, got)
    assert {f.split("[")[0] for f, _, _ in pairs} >= {"hidden_states", "attentions"}
    for field, e, g in pairs:
        assert e.shape == g.shape, field
        np.testing.assert_allclose(g, e, atol=1e-5, rtol=0, err_msg=field)


@pytest.mark.parametrize("head", HEADS)
def test_reads_transformers_tf_model_h5_and_matches_its_outputs_and_losses(tmp_path, head):
    transformers = pytest.importorskip("transformers")
    config = transformers.AlbertConfig(**TINY | {"num_labels": 2})
    theirs = getattr(transformers, f"TF{head}")(config)
    theirs(theirs.dummy_inputs)
    if hasattr(theirs, "predictions"):  # the MLM head's two biases, told apart: it computes with decoder_bias
        theirs.predictions.bias.assign(tf.random.normal((TINY["vocab_size"],)))
        theirs.predictions.decoder_bias.assign(tf.random.normal((TINY["vocab_size"],)))
    theirs.save_pretrained(tmp_path)
    assert (tmp_path / TF2_WEIGHTS_NAME).is_file() and not (tmp_path / "model.safetensors").exists()
    ours = getattr(modeling_tf, f"TF{head}").from_pretrained(tmp_path)
    assert {v.shape for v in ours.trainable_variables} <= {tuple(v.shape) for v in theirs.trainable_variables}
    # The masked-LM heads' file holds the word embedding twice (once under predictions/): one weight.
    _, info = getattr(openalbert, head).from_pretrained(tmp_path, output_loading_info=True)
    assert info["unexpected_keys"] == [] and info["missing_keys"] == []

    batch, labels = framework_inputs(head), _labels(head)
    expected = theirs(**batch, **labels, output_hidden_states=True, output_attentions=True)
    got = ours(**batch, **labels, output_hidden_states=True, output_attentions=True)
    pairs = output_pairs(expected, got)
    assert ("loss" in got) == bool(labels) and len(pairs) > 2
    for field, e, g in pairs:
        assert e.shape == g.shape, field
        np.testing.assert_allclose(g, e, atol=2e-5, rtol=0, err_msg=field)


def test_sharded_tf_checkpoint_as_transformers_writes_it(tmp_path):
    # tf_model-*.h5 with tf_model.h5.index.json; the MLM head's two biases may land in different shards.
    transformers = pytest.importorskip("transformers")
    theirs = transformers.TFAlbertForPreTraining(transformers.AlbertConfig(**TINY))
    theirs(theirs.dummy_inputs)
    theirs.predictions.decoder_bias.assign(tf.random.normal((TINY["vocab_size"],)))
    theirs.save_pretrained(tmp_path / "one")
    theirs.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert len(list((tmp_path / "sharded").glob("tf_model-*.h5"))) > 2
    assert not (tmp_path / "sharded" / TF2_WEIGHTS_NAME).exists()
    batch = framework_inputs("AlbertForPreTraining")
    expected = theirs(**batch)
    got = modeling_tf.TFAlbertForPreTraining.from_pretrained(tmp_path / "sharded")(**batch)
    np.testing.assert_allclose(got.prediction_logits, expected.prediction_logits, atol=2e-5, rtol=0)
    np.testing.assert_allclose(got.sop_logits, expected.sop_logits, atol=2e-5, rtol=0)
    whole = openalbert.AlbertForPreTraining.from_pretrained(tmp_path / "one").state_dict()
    sharded, info = openalbert.AlbertForPreTraining.from_pretrained(
        tmp_path / "sharded", output_loading_info=True
    )
    assert info["missing_keys"] == info["unexpected_keys"] == []
    for name, tensor in sharded.state_dict().items():
        torch.testing.assert_close(tensor, whole[name], atol=0, rtol=0, msg=name)
    next((tmp_path / "sharded").glob("tf_model-*.h5")).unlink()
    with pytest.raises(FileNotFoundError, match="lists shard tf_model-"):
        openalbert.AlbertForPreTraining.from_pretrained(tmp_path / "sharded")


def test_pytorch_classes_read_a_tf_only_checkpoint(tmp_path):
    transformers = pytest.importorskip("transformers")
    theirs = transformers.TFAlbertForPreTraining(transformers.AlbertConfig(**TINY))
    theirs(theirs.dummy_inputs)
    theirs.predictions.decoder_bias.assign(
        tf.random.normal((TINY["vocab_size"],))
    )  # the bias it computes with
    theirs.save_pretrained(tmp_path)
    torch_model = openalbert.AlbertForPreTraining.from_pretrained(tmp_path, from_tf=True)  # (as transformers)
    batch = framework_inputs("AlbertForPreTraining")
    expected = theirs(**batch)
    with torch.no_grad():
        got = torch_model(**{k: torch.tensor(v) for k, v in batch.items()})
    real = batch["attention_mask"].astype(bool)  # openalbert's unpadded path leaves zeros at the padding
    np.testing.assert_allclose(
        got.prediction_logits.numpy()[real], expected.prediction_logits.numpy()[real], atol=1e-5
    )
    np.testing.assert_allclose(got.sop_logits.numpy(), expected.sop_logits, atol=1e-5, rtol=0)


def test_save_pretrained_is_read_by_pytorch_and_transformers_tf(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = modeling_tf.TFAlbertForPreTraining(framework_config())
    model.predictions.bias.assign(tf.random.normal((TINY["vocab_size"],)))
    model.save_pretrained(tmp_path)
    batch = framework_inputs("AlbertForPreTraining")
    got = model(**batch)
    with torch.no_grad():
        expected = openalbert.AlbertForPreTraining.from_pretrained(tmp_path)(
            **{k: torch.tensor(v) for k, v in batch.items()}
        )
    real = batch["attention_mask"].astype(bool)  # openalbert's unpadded path leaves zeros at the padding
    np.testing.assert_allclose(
        got.prediction_logits.numpy()[real], expected.prediction_logits.numpy()[real], atol=1e-5
    )
    np.testing.assert_allclose(got.sop_logits, expected.sop_logits.numpy(), atol=1e-5, rtol=0)
    # transformers' TF classes take the same state dict by their own name conversion. (Their from_pretrained
    # cannot read any model.safetensors with safetensors >= 0.8: "'safe_open' object is not iterable".)
    from safetensors.torch import load_file
    from transformers.modeling_tf_pytorch_utils import load_pytorch_weights_in_tf2_model

    theirs = transformers.TFAlbertForPreTraining(transformers.AlbertConfig(**TINY | {"num_labels": 2}))
    load_pytorch_weights_in_tf2_model(theirs, load_file(tmp_path / "model.safetensors"))
    np.testing.assert_allclose(theirs(**batch).prediction_logits, got.prediction_logits, atol=1e-5, rtol=0)
    again = modeling_tf.TFAlbertForPreTraining.from_pretrained(tmp_path, from_pt=True)  # (as transformers)
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[name], array, err_msg=name)


def test_save_pretrained_shards_safetensors(tmp_path):
    # transformers' save_pretrained options; before, refused
    model = modeling_tf.TFAlbertForMaskedLM(framework_config())
    model.predictions.bias.assign(tf.random.normal((TINY["vocab_size"],)))
    model.save_pretrained(tmp_path / "shards", max_shard_size="20KB")
    shards = sorted(p.name for p in (tmp_path / "shards").glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "shards" / "model.safetensors.index.json").is_file()
    assert not (tmp_path / "shards" / "model.safetensors").exists()
    batch = framework_inputs("AlbertForMaskedLM")
    again = modeling_tf.TFAlbertForMaskedLM.from_pretrained(tmp_path / "shards")
    np.testing.assert_array_equal(again(**batch).logits.numpy(), model(**batch).logits.numpy())


@pytest.mark.parametrize("head", HEADS)
def test_safe_serialization_false_writes_the_tf_model_h5_transformers_tf_classes_read(tmp_path, head):
    # As transformers' TF classes save by default: tf_model.h5 (or its shards), which they read without
    # from_pt (their TF from_pretrained cannot read model.safetensors with safetensors >= 0.8); it was
    # pytorch_model.bin before. Every class here reads it too, and weights of another layout are removed.
    import transformers

    model = getattr(modeling_tf, f"TF{head}")(framework_config())
    if hasattr(model, "predictions"):
        model.predictions.bias.assign(tf.random.normal((TINY["vocab_size"],)))
    batch = framework_inputs(head)
    expected = model(batch)
    first = [k for k in expected if k != "loss"][0]
    for size, files in (("5GB", ["config.json", "tf_model.h5"]), ("20KB", None)):
        directory = tmp_path / size
        model.save_pretrained(directory)  # a safetensors save first: replaced by the h5 below
        model.save_pretrained(directory, safe_serialization=False, max_shard_size=size)
        names = sorted(p.name for p in directory.iterdir())
        if files is not None:
            assert names == files
        else:
            assert "tf_model.h5.index.json" in names and len(names) > 3 and "model.safetensors" not in names
        theirs, info = getattr(transformers, f"TF{head}").from_pretrained(directory, output_loading_info=True)
        assert not info["missing_keys"] and not info["mismatched_keys"], info
        assert all(k.startswith("dropout") for k in info["unexpected_keys"]), info  # (Keras' own layer names)
        np.testing.assert_allclose(theirs(batch)[first], expected[first], atol=1e-5, rtol=0, err_msg=size)
        again = getattr(modeling_tf, f"TF{head}").from_pretrained(directory)
        np.testing.assert_array_equal(again(batch)[first].numpy(), expected[first].numpy(), err_msg=size)
    # (sdpa: every position computed, padding too, as the TF classes compute them)
    torch_model = (
        getattr(openalbert, head).from_pretrained(tmp_path / "20KB", attn_implementation="sdpa").eval()
    )
    with torch.no_grad():
        got = torch_model(**{k: torch.tensor(v) for k, v in batch.items()})[first]
    np.testing.assert_allclose(got.numpy(), expected[first].numpy(), atol=1e-5, rtol=0)


def test_a_head_reads_a_bare_checkpoint_and_reports_its_fresh_weights(tmp_path, caplog):
    modeling_tf.TFAlbertModel(framework_config()).save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="openalbert.modeling_tf"):
        model = modeling_tf.TFAlbertForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    assert "newly initialised: ['classifier.bias', 'classifier.weight']" in caplog.text
    bare = modeling_tf.TFAlbertModel.from_pretrained(tmp_path).state_dict()
    for name, array in model.state_dict().items():
        if name.startswith("albert."):  # the encoder is the checkpoint's, under the head's "albert" prefix
            np.testing.assert_array_equal(array, bare[name.removeprefix("albert.")], err_msg=name)
    # and the bare checkpoint has the names the PyTorch AlbertModel writes
    openalbert.AlbertModel(framework_config()).save_pretrained(tmp_path / "pt")
    with (
        safe_open(tmp_path / "model.safetensors", "np") as ours,
        safe_open(tmp_path / "pt" / "model.safetensors", "np") as pt,
    ):
        assert sorted(ours.keys()) == sorted(pt.keys())
    assert model(**framework_inputs("AlbertModel")).logits.shape == (B, 3)
    assert_reheads(model, tmp_path / "three")  # 3 labels saved, 2 asked for


def test_keras_fit_lowers_the_masked_lm_loss_and_dropout_follows_training():
    small = dict(num_hidden_layers=2, num_hidden_groups=1, inner_group_num=1)
    model = modeling_tf.TFAlbertForMaskedLM(framework_config(**small))
    batch = framework_inputs("AlbertForMaskedLM")
    data = tf.data.Dataset.from_tensor_slices((batch, {"labels": batch["input_ids"]})).batch(B).repeat()
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
    history = model.fit(data, steps_per_epoch=5, epochs=4, verbose=0, shuffle=False).history["loss"]
    assert history[-1] < 0.5 * history[0]
    assert model.evaluate(data, steps=1, verbose=0) < history[0]
    a, b = (model(**batch, training=True).logits.numpy() for _ in range(2))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(model(**batch).logits, model(**batch).logits)


def test_keras_fit_scales_the_loss_for_a_loss_scale_optimizer():
    # mixed_float16 training wraps the optimizer in a LossScaleOptimizer, which unscales the gradients: the
    # loss must be scaled, or every update is 32768 times too small. In fp32 the scaling changes nothing.
    keras = modeling_tf.keras
    config = framework_config(num_hidden_layers=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    batch = framework_inputs("AlbertForMaskedLM")
    models = [modeling_tf.TFAlbertForMaskedLM(config) for _ in range(2)]
    for model in models:
        model(**batch)
    models[1].set_weights(models[0].get_weights())
    before = models[0].get_weights()
    optimizers = (
        keras.optimizers.SGD(0.1),
        keras.mixed_precision.LossScaleOptimizer(keras.optimizers.SGD(0.1)),
    )
    for model, optimizer in zip(models, optimizers):
        model.compile(optimizer=optimizer)
        model.fit(batch, {"labels": batch["input_ids"]}, batch_size=B, epochs=1, verbose=0, shuffle=False)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(models[0].get_weights(), before))
    assert moved > 1e-4
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_keras_compile_metrics_loss_and_sample_weights_as_transformers_tf_models_take_them():
    model = modeling_tf.TFAlbertForSequenceClassification(framework_config())
    batch, labels = framework_inputs("AlbertModel"), np.array([0, 1, 1], dtype=np.int32)
    logits = model(**batch).logits.numpy()
    own = model(**batch, labels=labels).loss.numpy()  # per example, (B,)
    accuracy = float(np.mean(logits.argmax(-1) == labels))

    # metrics= on the logits, with the model's own loss; labels apart (x, y) or inside the inputs
    model.compile(optimizer="sgd", metrics=["accuracy"])
    logs = model.evaluate(batch, labels, batch_size=B, verbose=0, return_dict=True)
    assert logs["accuracy"] == pytest.approx(accuracy)
    assert logs["loss"] == pytest.approx(own.mean(), rel=1e-5)
    inside = model.evaluate(batch | {"labels": labels}, batch_size=B, verbose=0, return_dict=True)
    assert inside == pytest.approx(logs)

    # sample_weight weighs the per-example losses (Keras' sum over the batch size)
    weights = np.array([1.0, 0.0, 2.0], dtype=np.float32)
    weighted = model.evaluate(batch, labels, sample_weight=weights, batch_size=B, verbose=0)
    assert weighted[0] == pytest.approx(float((own * weights).sum() / B), rel=1e-5)

    # loss= replaces the model's own: here twice the cross-entropy of the logits
    def doubled(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return 2.0 * tf.keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)

    model.compile(optimizer="sgd", loss=doubled, metrics=["accuracy"])
    logs = model.evaluate(batch, labels, batch_size=B, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(2 * own.mean(), rel=1e-5)
    assert logs["accuracy"] == pytest.approx(accuracy)
    history = model.fit(batch, labels, batch_size=B, epochs=2, verbose=0).history
    assert set(history) == {"loss", "accuracy"} and len(history["loss"]) == 2

    # a head whose own loss is one number per batch cannot weigh examples: said, not ignored
    mlm = modeling_tf.TFAlbertForMaskedLM(framework_config())
    mlm.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="compile\\(loss=...\\)"):
        mlm.evaluate(batch, {"labels": batch["input_ids"]}, sample_weight=weights, batch_size=B, verbose=0)


@pytest.mark.parametrize("head", ["AlbertForSequenceClassification", "AlbertForQuestionAnswering"])
def test_keras_predict_answers_as_a_call(head):
    model = getattr(modeling_tf, f"TF{head}")(framework_config())
    batch = framework_inputs(head)
    expected = model(**batch)
    for got in (model.predict(batch, batch_size=2, verbose=0), model.predict_on_batch(batch)):
        assert type(got) is type(expected)
        for field, value in vars(expected).items():
            if value is not None:
                np.testing.assert_allclose(getattr(got, field), value, atol=1e-5, err_msg=field)


def test_call_forms_transformers_tf_users_write():
    model = modeling_tf.TFAlbertForSequenceClassification(framework_config())
    batch = framework_inputs("AlbertModel")
    out = model(**batch)
    np.testing.assert_array_equal(model(batch).logits, out.logits)  # one dict, as Keras passes a batch
    # flags and Nones inside that dict, as transformers' TF models take them, eager and traced
    flagged = model({**batch, "output_hidden_states": True, "return_dict": True, "position_ids": None})
    assert len(flagged.hidden_states) == TINY["num_hidden_layers"] + 1
    np.testing.assert_array_equal(flagged.logits, out.logits)
    traced = tf.function(lambda b: model({**b, "output_hidden_states": True}).hidden_states[-1])
    np.testing.assert_allclose(traced(batch), flagged.hidden_states[-1], atol=1e-6)
    assert model(**batch, return_dict=False)[0] is not None and len(model(**batch, return_dict=False)) == 1
    # a list of inputs in the order of the arguments, as transformers takes them
    listed = model([batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]])
    np.testing.assert_array_equal(listed.logits, out.logits)
    choices = modeling_tf.TFAlbertForMultipleChoice(framework_config())
    mc = framework_inputs("AlbertForMultipleChoice")
    np.testing.assert_array_equal(
        choices([mc["input_ids"], mc["attention_mask"], mc["token_type_ids"]]).logits, choices(**mc).logits
    )
    # the config's output flags where the call gives none (from_pretrained(..., output_hidden_states=True))
    flagged = modeling_tf.TFAlbertModel(framework_config(output_hidden_states=True, return_dict=False))
    assert isinstance(flagged(**batch), tuple) and len(flagged(**batch)[2]) == TINY["num_hidden_layers"] + 1
    embeds = tf.gather(model.albert.embeddings.word_embeddings.table, batch["input_ids"])
    by_embeds = model(
        inputs_embeds=embeds, attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
    )
    np.testing.assert_allclose(by_embeds.logits, out.logits, atol=1e-6)
    masked = model(**batch, head_mask=np.array([1.0, 0.0, 1.0, 1.0]), output_attentions=True)
    assert all(float(tf.reduce_max(tf.abs(a[:, 1]))) == 0 for a in masked.attentions)
    # multi-label classification, which transformers' TF classes lack: a binary cross-entropy per example
    labels = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    loss = model(**batch, labels=labels).loss
    assert loss.shape == (B,) and np.isfinite(loss.numpy()).all()


def test_an_answer_outside_the_window_adds_no_loss():
    model = modeling_tf.TFAlbertForQuestionAnswering(framework_config())
    batch = framework_inputs("AlbertForQuestionAnswering")
    inside = model(**batch, start_positions=[1, 2, 3], end_positions=[2, 2, 4]).loss.numpy()
    outside = model(**batch, start_positions=[1, T + 5, 3], end_positions=[2, T + 5, 4]).loss.numpy()
    assert outside[1] == 0 and np.isfinite(outside).all()
    np.testing.assert_allclose(outside[[0, 2]], inside[[0, 2]], rtol=1e-6)


def test_regression_over_several_labels_is_squared_error_as_in_pytorch(tmp_path):
    # problem_type="regression" with num_labels 2: the PyTorch classes' mean squared error (per example here,
    # as the TF losses are); it was the multi-label loss, silently.
    torch.manual_seed(0)
    config = framework_config()
    config.num_labels, config.problem_type = 2, "regression"
    torch_model = openalbert.AlbertForSequenceClassification(config).eval()
    torch_model.save_pretrained(tmp_path)
    tf_model = modeling_tf.TFAlbertForSequenceClassification.from_pretrained(tmp_path)
    batch = framework_inputs("AlbertForSequenceClassification")
    labels = np.random.RandomState(0).randn(B, 2).astype(np.float32)
    got = tf_model(batch, labels=labels).loss.numpy()
    with torch.no_grad():
        expected = torch_model(
            **{k: torch.tensor(v) for k, v in batch.items()}, labels=torch.tensor(labels)
        ).loss
    assert got.shape == (B,)
    np.testing.assert_allclose(got.mean(), float(expected), rtol=1e-5)


def test_inputs_a_user_can_get_wrong_raise_named_errors():
    model = modeling_tf.TFAlbertModel(framework_config())
    with pytest.raises(ValueError, match=r"input_ids holds 99, outside the valid range \[0, 98\]"):
        model(np.array([[1, 99]]))
    with pytest.raises(ValueError, match="sequence length 65 exceeds max_position_embeddings \\(64\\)"):
        model(np.ones((1, 65), dtype=np.int64))
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model(attention_mask=np.ones((1, 3)))
    with pytest.raises(TypeError, match="unexpected arguments \\['labels'\\]"):
        model(np.array([[1, 2]]), labels=np.array([1]))
    with pytest.raises(ValueError, match="tie_word_embeddings=false"):  # a decoder of its own
        modeling_tf.TFAlbertForMaskedLM(framework_config(extra={"tie_word_embeddings": False}))(
            np.array([[1, 2]])
        )
    with pytest.raises(FileNotFoundError):
        modeling_tf.TFAlbertModel.from_pretrained("/no/such/dir")
    with pytest.raises(TypeError, match="unknown argument 'from_jax'"):
        modeling_tf.TFAlbertModel.from_pretrained(openalbert.DEFAULT_MODEL, from_jax=True)


def test_the_embedded_model_fills_masks_as_in_pytorch():
    # Real weights, relative positions: the default model's answers, its logits to 1e-4.
    tokenizer = openalbert.AlbertTokenizer.from_pretrained(openalbert.DEFAULT_MODEL)
    texts = ["The capital of France is [MASK].", "Plants make [MASK] from light, water and air."]
    batch = tokenizer(texts, padding=True, return_tensors="np")
    torch_model = openalbert.AlbertForMaskedLM.from_pretrained(openalbert.DEFAULT_MODEL)
    tf_model = modeling_tf.TFAlbertForMaskedLM.from_pretrained(openalbert.DEFAULT_MODEL)
    with torch.no_grad():
        expected = torch_model(**{k: torch.tensor(v) for k, v in batch.items()}).logits.numpy()
    got = tf_model(**batch).logits.numpy()
    at = batch["input_ids"] == tokenizer.mask_token_id
    assert at.sum() == 2
    np.testing.assert_allclose(got[at], expected[at], atol=1e-4, rtol=0)
    assert (got[at].argmax(-1) == expected[at].argmax(-1)).all()


def test_corrupt_tf_model_h5_names_the_file(tmp_path):
    openalbert.AlbertConfig(**TINY).save_pretrained(tmp_path)
    (tmp_path / TF2_WEIGHTS_NAME).write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="tf_model.h5 is corrupt or truncated"):
        modeling_tf.TFAlbertForMaskedLM.from_pretrained(tmp_path)


def test_hub_ids_from_the_offline_cache_tf_only_repos_too(tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    cache, commit = tmp_path / "hub", "0123456789abcdef0123456789abcdef01234567"
    theirs = transformers.TFAlbertForMaskedLM(transformers.AlbertConfig(**TINY))
    theirs(theirs.dummy_inputs)
    torch.manual_seed(0)
    for repo_id, model in (
        ("someone/tf-only", theirs),
        ("someone/pytorch", openalbert.AlbertForMaskedLM(framework_config())),
    ):
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        model.save_pretrained(repo / "snapshots" / commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    tf_only = modeling_tf.TFAlbertForMaskedLM.from_pretrained("someone/tf-only")
    batch = framework_inputs("AlbertForMaskedLM")
    np.testing.assert_allclose(tf_only(**batch).logits, theirs(**batch).logits, atol=1e-5, rtol=0)
    pytorch_reads_tf = openalbert.AlbertForMaskedLM.from_pretrained("someone/tf-only")  # tf_model.h5 fetched
    with torch.no_grad():
        logits = pytorch_reads_tf(**{k: torch.tensor(v) for k, v in batch.items()}).logits.numpy()
    real = batch["attention_mask"].astype(bool)
    np.testing.assert_allclose(logits[real], theirs(**batch).logits.numpy()[real], atol=1e-5, rtol=0)
    from_pytorch = modeling_tf.TFAlbertForMaskedLM.from_pretrained("someone/pytorch")
    assert from_pytorch(**batch).logits.shape == (B, T, TINY["vocab_size"])
    with pytest.raises(FileNotFoundError, match="'someone/absent' was not found"):
        modeling_tf.TFAlbertForMaskedLM.from_pretrained("someone/absent")


def test_mixed_bf16_policy_and_xla_compilation():
    fp32 = modeling_tf.TFAlbertForMaskedLM(framework_config())
    batch = framework_inputs("AlbertForMaskedLM")
    expected = fp32(**batch, output_hidden_states=True)
    # A Keras mixed-precision policy: fp32 weights, bf16 computation, the loss in fp32
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = modeling_tf.TFAlbertForMaskedLM(framework_config())
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    mixed.load_state_dict(fp32.state_dict())
    got = mixed(**batch, labels=batch["input_ids"], output_hidden_states=True)
    assert {tf.as_dtype(v.dtype).name for v in mixed.trainable_variables} == {"float32"}
    assert got.logits.dtype == tf.bfloat16 and got.loss.dtype == tf.float32
    e, g = (
        np.asarray(tf.cast(o.hidden_states[-1], tf.float32)).reshape(-1, TINY["hidden_size"])
        for o in (expected, got)
    )
    assert ((e * g).sum(-1) / np.linalg.norm(e, axis=-1) / np.linalg.norm(g, axis=-1)).min() > 0.999
    # compiled by XLA, the same numbers as eager
    compiled = tf.function(lambda inputs: fp32(inputs).logits, jit_compile=True)
    np.testing.assert_allclose(compiled(batch), expected.logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("head", ["AlbertForQuestionAnswering", "AlbertForMultipleChoice"])
def test_saved_model_for_tf_serving(tmp_path, head):
    model = getattr(modeling_tf, f"TF{head}")(framework_config())
    model.save_pretrained(tmp_path, saved_model=True)
    served = tf.saved_model.load(str(tmp_path / "saved_model" / "1")).signatures["serving_default"]
    batch = framework_inputs(head)
    got = served(**{k: tf.constant(v, tf.int32) for k, v in batch.items()})
    expected = model(**batch)
    assert sorted(got) == sorted(expected.keys())
    for name in got:
        np.testing.assert_allclose(got[name], getattr(expected, name), atol=1e-5, rtol=0, err_msg=name)


@pytest.mark.parametrize("head", ["AlbertForMaskedLM", "AlbertForMultipleChoice"])
def test_keras_save_and_load_model_round_trip(tmp_path, head):
    torch.manual_seed(0)
    getattr(openalbert, head)(framework_config()).save_pretrained(tmp_path / "pt")
    model = getattr(modeling_tf, f"TF{head}").from_pretrained(tmp_path / "pt")
    model.save(tmp_path / "model.keras")
    loaded = tf.keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded) is type(model) and loaded.config == model.config
    batch = framework_inputs(head)
    expected = model(**batch).logits
    np.testing.assert_array_equal(loaded(**batch).logits, expected)
    fresh = type(model)(model.config)  # the weights came from the file, not from the same initialisation
    assert not np.allclose(fresh(**batch).logits, expected)


@pytest.mark.parametrize("head", HEADS)
def test_variables_carry_the_layer_paths_of_transformers_tf_classes(head):
    # Before, a variable was named "gamma:0" (Keras 2) or "LayerNorm/gamma" (Keras 3's path), so weight decay
    # that leaves out "LayerNorm" and "bias" by name, as transformers' AdamWeightDecay does, decayed them too.
    import transformers

    theirs = getattr(transformers, f"TF{head}")(transformers.AlbertConfig(**TINY | {"num_labels": 2}))
    theirs(theirs.dummy_inputs)
    model = getattr(modeling_tf, f"TF{head}")(framework_config())
    # (Keras numbers a model's name when the process made one of that name before: tf_albert_model_3/...)
    expected = {
        model.name + v.name.removesuffix(":0")[len(theirs.name) :] for v in theirs.trainable_variables
    }
    expected.discard(f"{model.name}/predictions/decoder/bias")  # (their copy of predictions/bias)

    def names() -> set[str]:  # Keras 3 keeps the layer path in .path, Keras 2 in .name
        return {
            v.path if modeling_tf._KERAS_3 else v.name.removesuffix(":0") for v in model.trainable_variables
        }

    assert names() == expected
    model.resize_token_embeddings(TINY["vocab_size"] + 3)  # new variables, made where the old ones were
    assert names() == expected
    if head == "AlbertForMaskedLM" and not modeling_tf._KERAS_3:
        optimizer = transformers.AdamWeightDecay(
            weight_decay_rate=0.01, exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"]
        )
        decayed = {
            v.name.split("/")[-1] for v in model.trainable_variables if optimizer._do_use_weight_decay(v.name)
        }
        assert decayed == {"kernel:0", "weight:0", "embeddings:0"}


def test_resize_token_embeddings_and_the_embedding_api_of_transformers_tf_classes(tmp_path):
    import transformers

    api = ("num_parameters", "get_input_embeddings", "set_input_embeddings", "get_output_embeddings",
           "get_lm_head", "get_bias", "set_bias", "resize_token_embeddings")  # fmt: skip
    assert all(hasattr(transformers.TFAlbertForMaskedLM, name) for name in api)
    torch.manual_seed(0)
    openalbert.AlbertForMaskedLM(framework_config()).save_pretrained(tmp_path / "pt")
    model = modeling_tf.TFAlbertForMaskedLM.from_pretrained(tmp_path / "pt")
    V, E = TINY["vocab_size"], TINY["embedding_size"]
    batch = framework_inputs("AlbertForMaskedLM")
    before, n, count = model(**batch).logits.numpy(), model.num_parameters(), len(model.trainable_variables)
    assert n == model.count_params() and model.get_lm_head() is model.predictions
    assert model.get_output_embeddings() is model.get_input_embeddings()
    table = model.resize_token_embeddings(V + 5)
    assert tuple(table.shape) == (V + 5, E) and model.config.vocab_size == V + 5
    assert model.get_input_embeddings().weight is table and tuple(model.get_bias()["bias"].shape) == (V + 5,)
    # the old variables are gone from the model, not kept beside the new ones
    assert model.num_parameters() == n + 5 * (E + 1) and len(model.trainable_variables) == count
    after = model(**batch).logits.numpy()
    np.testing.assert_allclose(after[..., :V], before, atol=1e-5, rtol=0)
    # what it saves is the PyTorch class's resized model; it trains once compiled again
    model.save_pretrained(tmp_path / "resized")
    pt = openalbert.AlbertForMaskedLM.from_pretrained(tmp_path / "resized")
    with torch.no_grad():
        theirs = pt(**{k: torch.tensor(v) for k, v in batch.items()}).logits.numpy()
    real = batch["attention_mask"].astype(bool)  # (PyTorch skips the padding)
    np.testing.assert_allclose(theirs[real], after[real], atol=1e-5, rtol=0)
    new_row = table.numpy()[V + 2]
    model.compile(optimizer="adam")
    new_ids = np.full_like(batch["input_ids"], V + 2)  # the new token, in and out
    model.fit({**batch, "input_ids": new_ids, "labels": new_ids}, epochs=1, verbose=0)
    assert not np.allclose(model.get_input_embeddings().weight.numpy()[V + 2], new_row)
    # a smaller vocabulary keeps the first rows; a head without a masked-LM head has no bias
    trained = model(**batch).logits.numpy()
    model.resize_token_embeddings(V - 3)
    np.testing.assert_allclose(model(**batch).logits.numpy(), trained[..., : V - 3], atol=1e-5, rtol=0)
    classifier = modeling_tf.TFAlbertForSequenceClassification(framework_config())
    assert classifier.get_lm_head() is None and classifier.get_bias() is None
    assert tuple(classifier.resize_token_embeddings(V + 1).shape) == (V + 1, E)
    with pytest.raises(ValueError, match="shape \\(rows, 16\\)"):
        classifier.set_input_embeddings(np.zeros((4, 3), np.float32))


def test_tf_function_keras_callbacks_and_keras_2_saving_carry_the_outputs(tmp_path):
    # Outputs are mappings, which tf.function, tf.nest and Keras rebuild; a plain dataclass failed all three.
    from transformers.keras_callbacks import KerasMetricCallback

    head = "AlbertForSequenceClassification"
    model = getattr(modeling_tf, f"TF{head}")(framework_config())
    batch = framework_inputs(head)
    expected = model(**batch)
    traced = tf.function(model)(batch)
    assert type(traced) is type(expected) and list(traced.keys()) == ["logits"]
    np.testing.assert_allclose(traced.logits, expected.logits, atol=1e-5, rtol=0)
    labels = _labels(head)["labels"]
    seen = []
    callback = KerasMetricCallback(
        lambda p: seen.append(p) or {"accuracy": float((p[0].argmax(-1) == p[1]).mean())},
        eval_dataset=tf.data.Dataset.from_tensor_slices((batch, labels)).batch(2),
    )
    model.compile(optimizer="adam")
    history = model.fit(batch, labels, batch_size=2, epochs=1, callbacks=[callback], verbose=0)
    assert seen[0][0].shape == (B, 2) and "accuracy" in history.history
    if not modeling_tf._KERAS_3:  # Keras 3 saves only .keras files (tested above)
        model.save(tmp_path / "saved")
        loaded = tf.keras.models.load_model(tmp_path / "saved")
        np.testing.assert_allclose(loaded(batch)["logits"], model(batch).logits, atol=1e-5, rtol=0)


@pytest.mark.skipif(os.environ.get("TF_USE_LEGACY_KERAS") == "1", reason="this run is the Keras 2 one")
def test_the_tf_classes_pass_these_tests_under_keras_2_too():
    # README promises Keras 2 (tf-keras, what transformers 4.57.1's TF classes run on) as well as Keras 3;
    # TensorFlow picks one when it is imported, so the file runs again in a process that asks for Keras 2.
    pytest.importorskip("tf_keras")
    import subprocess
    import sys

    env = os.environ | {"TF_USE_LEGACY_KERAS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "not relative"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:]


def test_multiple_choice_drops_out_at_the_hidden_rate_as_transformers_tf():
    # transformers' TF (and Flax) multiple-choice head uses hidden_dropout_prob, its PyTorch one the classifier's
    only_classifier = framework_config(
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.5
    )
    batch = framework_inputs("AlbertForMultipleChoice")
    model = modeling_tf.TFAlbertForMultipleChoice(only_classifier)
    np.testing.assert_array_equal(model(batch, training=True).logits, model(batch, training=False).logits)
    model = modeling_tf.TFAlbertForMultipleChoice(
        framework_config(hidden_dropout_prob=0.5, classifier_dropout_prob=0.0)
    )
    assert model.dropout.rate == 0.5


@pytest.mark.parametrize("head", HEADS)
def test_transformers_tf_model_api_around_the_call(head):
    # hf_compute_loss (the call's own loss, from labels and logits), input_signature, dummy_inputs,
    # serving_output and main_input_name, as transformers' TF classes have them
    transformers = pytest.importorskip("transformers")
    model = getattr(modeling_tf, f"TF{head}")(framework_config())
    theirs = getattr(transformers, f"TF{head}")(transformers.AlbertConfig(**TINY, num_labels=2))
    assert model.main_input_name == theirs.main_input_name == "input_ids"
    for name, spec in theirs.input_signature.items():
        if name in model.input_signature:
            assert model.input_signature[name].shape.as_list() == spec.shape.as_list(), name
    for name, dummy in model.dummy_inputs.items():
        assert dummy.shape == theirs.dummy_inputs[name].shape and dummy.dtype == tf.int32, name
    batch = framework_inputs(head)
    labels = {
        "AlbertForPreTraining": {"labels": batch["input_ids"], "sentence_order_label": np.array([0, 1, 0])},
        "AlbertForMaskedLM": {"labels": np.where(batch["attention_mask"] > 0, batch["input_ids"], -100)},
        "AlbertForSequenceClassification": {"labels": np.array([0, 1, 1])},
        "AlbertForTokenClassification": {"labels": np.where(batch["attention_mask"] > 0, 1, -100)},
        "AlbertForQuestionAnswering": {
            "start_positions": np.array([1, 2, 3]),
            "end_positions": np.array([2, 2, 4]),
        },
        "AlbertForMultipleChoice": {"labels": np.array([0, 1, 0])},
    }.get(head)
    if labels is None:
        with pytest.raises(NotImplementedError, match="no loss"):
            model.hf_compute_loss(None, None)
    else:
        out = model(batch | labels)
        if head == "AlbertForQuestionAnswering":
            given = {"start_position": labels["start_positions"], "end_position": labels["end_positions"]}
            loss = model.hf_compute_loss(given, (out.start_logits, out.end_logits))
        elif head == "AlbertForPreTraining":
            loss = model.hf_compute_loss(labels, (out.prediction_logits, out.sop_logits))
        else:
            loss = model.hf_compute_loss(labels["labels"], out.logits)
        np.testing.assert_allclose(loss.numpy(), out.loss.numpy(), rtol=1e-6)
    served = model.serving_output(model(batch, output_hidden_states=True))
    assert served.hidden_states is None  # the config does not ask for them
    with pytest.raises(NotImplementedError, match="upload_folder"):
        model.push_to_hub("someone/model")


def test_prepare_tf_dataset_batches_as_transformers_and_fit_trains_on_it():
    datasets = pytest.importorskip("datasets")
    transformers = pytest.importorskip("transformers")
    spiece = spiece_or_skip()
    rng = np.random.RandomState(0)
    rows = [list(rng.randint(5, 99, rng.randint(3, 9))) for _ in range(10)]
    data = datasets.Dataset.from_dict(
        {
            "input_ids": rows,
            "token_type_ids": [[0] * len(r) for r in rows],
            "label": [i % 2 for i in range(10)],
            "text": ["unused"] * 10,
        }  # fmt: skip
    )
    model = modeling_tf.TFAlbertForSequenceClassification(framework_config())
    theirs = transformers.TFAlbertForSequenceClassification(transformers.AlbertConfig(**TINY, num_labels=2))
    ours_tok, their_tok = openalbert.AlbertTokenizer(spiece), transformers.AlbertTokenizer(str(spiece))
    got = model.prepare_tf_dataset(data, batch_size=4, shuffle=False, tokenizer=ours_tok)
    expected = theirs.prepare_tf_dataset(data, batch_size=4, shuffle=False, tokenizer=their_tok)
    assert len(got) == len(expected) == 3  # the last short batch kept without shuffling
    for (x, y), (ex, ey) in zip(got, expected):
        assert sorted(x) == sorted(ex) == ["attention_mask", "input_ids", "token_type_ids"]
        for key in x:
            np.testing.assert_array_equal(x[key], ex[key])
        np.testing.assert_array_equal(y, ey)
    shuffled = model.prepare_tf_dataset(data, batch_size=4, tokenizer=ours_tok)
    assert len(shuffled) == 2  # shuffling drops the last short batch, as in transformers
    model.compile(optimizer=modeling_tf.keras.optimizers.Adam(1e-3))
    history = model.fit(shuffled, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    # token labels are padded with -100 to the batch's width
    tagged = datasets.Dataset.from_dict({"input_ids": rows[:4], "labels": [[1] * len(r) for r in rows[:4]]})
    model = modeling_tf.TFAlbertForTokenClassification(framework_config())
    ((x, y),) = list(model.prepare_tf_dataset(tagged, batch_size=4, shuffle=False, tokenizer=ours_tok))
    np.testing.assert_array_equal(y.numpy() == -100, x["attention_mask"].numpy() == 0)
    with pytest.raises(ValueError, match="pass tokenizer="):
        list(model.prepare_tf_dataset(tagged, batch_size=4, shuffle=False))
    with pytest.raises(TypeError, match="datasets.Dataset"):
        model.prepare_tf_dataset({"input_ids": rows})


def test_every_activation_is_transformers_one():
    assert_activations_match(modeling_tf.ACT2FN, tf.constant)


def test_a_save_over_transformers_tf_weights_replaces_them(tmp_path):
    transformers = pytest.importorskip("transformers")
    theirs = transformers.TFAlbertForMaskedLM(transformers.AlbertConfig(**TINY))
    theirs(theirs.dummy_inputs)
    theirs.save_pretrained(tmp_path)
    assert (tmp_path / "tf_model.h5").is_file()
    modeling_tf.TFAlbertForMaskedLM(framework_config()).save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
