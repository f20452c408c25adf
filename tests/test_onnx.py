"""ONNX export: every model runs in ONNX Runtime with PyTorch's numbers at any batch and sequence size,
the int8 ONNX Runtime model stays close, and `openalbert export onnx` writes a self-contained folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import TINY

import openalbert
from openalbert.heads import MODEL_CLASSES

pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install openalbert[onnx])")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install openalbert[onnx])")

from openalbert.fast.onnx import export_onnx, onnx_session, quantize_onnx_int8  # noqa: E402

OUTPUTS = {
    "AlbertModel": ["last_hidden_state", "pooler_output"],
    "AlbertForPreTraining": ["prediction_logits", "sop_logits"],
    "AlbertForMaskedLM": ["logits"],
    "AlbertForSequenceClassification": ["logits"],
    "AlbertForTokenClassification": ["logits"],
    "AlbertForQuestionAnswering": ["start_logits", "end_logits"],
    "AlbertForMultipleChoice": ["logits"],
}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def batch(head: str, size: int, length: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Rows of different lengths (the first full, the others padded), both token types."""
    g = torch.Generator().manual_seed(seed)
    shape = (size, size + 1, length) if head == "AlbertForMultipleChoice" else (size, length)
    ids = torch.randint(5, TINY["vocab_size"], shape, generator=g)
    mask = torch.ones(shape, dtype=torch.long)
    for row in range(1, size):
        mask[row, ..., length - 2 * row :] = 0
    types = torch.zeros(shape, dtype=torch.long)
    types[..., length // 2 :] = 1
    return ids, mask, types


def assert_matches(onnx_out: dict[str, np.ndarray], torch_out, mask: torch.Tensor, atol: float) -> None:
    """Every output equal to PyTorch's; per-token outputs only at the real tokens."""
    keep = mask.bool().numpy()
    for name, got in onnx_out.items():
        want = torch_out[name].numpy()
        assert got.shape == want.shape, name
        if got.shape[: keep.ndim] == keep.shape:
            got, want = got[keep], want[keep]
        np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=name)


@pytest.mark.parametrize("head", list(MODEL_CLASSES))
def test_every_model_matches_pytorch_at_any_batch_and_length(head: str, tmp_path: Path) -> None:
    num_labels = 2 if head == "AlbertForQuestionAnswering" else 3  # QA: a start and an end logit
    model = MODEL_CLASSES[head](openalbert.AlbertConfig(**TINY, num_labels=num_labels)).eval()
    path = export_onnx(model, tmp_path / "model.onnx")
    session = onnx_session(path, threads=1)
    inputs = session.session.get_inputs()
    assert [i.name for i in inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert {i.type for i in inputs} == {"tensor(int64)"}
    assert session.output_names == OUTPUTS[head]
    for size, length in ((3, 11), (2, 6)):
        ids, mask, types = batch(head, size, length)
        with torch.no_grad():
            want = model(ids, mask, types)
        assert_matches(session.run(ids, mask, types), want, mask, atol=1e-4)


def test_export_leaves_the_model_as_it_was(tmp_path: Path) -> None:
    model = openalbert.AlbertForMaskedLM(openalbert.AlbertConfig(**TINY)).to(torch.bfloat16)
    model.train()
    impl = getattr(model.albert.encoder, "attn_implementation", None)
    path = export_onnx(model, tmp_path / "model.onnx", max_length=9)
    assert model.training and all(m.training for m in model.modules())
    assert model.dtype == torch.bfloat16
    assert getattr(model.albert.encoder, "attn_implementation", None) == impl
    # The bf16 model is exported in fp32 from a copy: ONNX Runtime gives the fp32 model's numbers.
    reference = model.float().eval()
    ids, mask, types = batch("AlbertForMaskedLM", 2, 13)
    with torch.no_grad():
        want = reference(ids, mask, types)
    assert_matches(onnx_session(path, threads=1).run(ids, mask, types), want, mask, atol=1e-4)


def test_a_model_that_returns_tuples_exports_its_named_outputs(tmp_path: Path) -> None:
    # config.return_dict=False (from_pretrained(..., return_dict=False)); before, the export failed
    model = openalbert.AlbertForQuestionAnswering(openalbert.AlbertConfig(**TINY, return_dict=False)).eval()
    session = onnx_session(export_onnx(model, tmp_path / "model.onnx"), threads=1)
    assert session.output_names == OUTPUTS["AlbertForQuestionAnswering"]
    ids, mask, types = batch("AlbertForQuestionAnswering", 2, 9)
    with torch.no_grad():
        want = model(ids, mask, types, return_dict=True)
    assert isinstance(model(ids, mask, types), tuple)
    assert_matches(session.run(ids, mask, types), want, mask, atol=1e-4)


@pytest.mark.parametrize("positions", ["absolute", "relative_key"])
def test_int8_model_is_fused_quantised_and_close(tmp_path: Path, positions: str) -> None:
    import onnx

    # With relative positions there is no position embedding for ORT's embedding fusion to add.
    config = openalbert.AlbertConfig(**TINY, position_embedding_type=positions)
    model = openalbert.AlbertModel(config).eval()
    path = export_onnx(model, tmp_path / "model.onnx")
    int8 = quantize_onnx_int8(path, tmp_path / "model_int8.onnx", config=config)
    ops = [node.op_type for node in onnx.load(int8).graph.node]
    # ONNX Runtime's BERT fusions found the residual LayerNorms (two per layer application), and the six
    # weight matrices of each layer run as int8 products (q, k, v inside QAttention where attention fused).
    layers = config.num_hidden_layers * config.inner_group_num
    # Without the embedding fusion, the embeddings' own add and LayerNorm fuse as one more.
    assert ops.count("SkipLayerNormalization") == 2 * layers + (positions != "absolute")
    assert ops.count("MatMulInteger") + 3 * ops.count("QAttention") >= 6 * layers
    ids, mask, types = batch("AlbertModel", 3, 11)
    with torch.no_grad():
        want = model(ids, mask, types).last_hidden_state.numpy()[mask.bool().numpy()]
    got = onnx_session(int8, threads=1).run(ids, mask, types)["last_hidden_state"][mask.bool().numpy()]
    cosine = (got * want).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(want, axis=-1)
    assert cosine.min() > 0.995
    assert np.abs(got - want).max() > 1e-5  # quantised indeed, not the fp32 graph


@pytest.mark.parametrize("reduce_range", [True, False])
def test_int8_weights_have_7_bits_with_reduce_range(tmp_path: Path, reduce_range: bool) -> None:
    """reduce_range=True keeps every int8 weight within 7 bits (no int16 saturation without VNNI); False uses
    all 8. The default follows this CPU (fast.quantize.has_vnni)."""
    import onnx
    from onnx import numpy_helper

    config = openalbert.AlbertConfig(**TINY)
    path = export_onnx(openalbert.AlbertModel(config).eval(), tmp_path / "model.onnx")
    int8 = quantize_onnx_int8(path, tmp_path / "model_int8.onnx", config=config, reduce_range=reduce_range)
    weights = [
        numpy_helper.to_array(t)
        for t in onnx.load(int8).graph.initializer
        if t.data_type == onnx.TensorProto.INT8
    ]
    assert weights
    largest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    # ORT's 7-bit range is -64..63: 2 x 255 x 64 = 32,640 still fits int16.
    assert largest in ((63, 64) if reduce_range else (127, 128))


def test_cli_writes_a_self_contained_folder(tmp_path: Path) -> None:
    from openalbert.checkpoint import DEFAULT_MODEL_DIR
    from openalbert.tokenizer import AlbertTokenizer

    tokenizer = AlbertTokenizer.from_pretrained(DEFAULT_MODEL_DIR)
    config = openalbert.AlbertConfig(**{**TINY, "vocab_size": tokenizer.vocab_size})
    model = openalbert.AlbertForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model", write_tokenizer_json=False)
    out = tmp_path / "onnx"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "openalbert", "export", "onnx", str(tmp_path / "model"), "--output", str(out)]
        + ["--int8"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert str(out) in run.stdout
    written = {p.name for p in out.iterdir()}
    assert {
        "model.onnx",
        "model_int8.onnx",
        "config.json",
        "spiece.model",
        "tokenizer_config.json",
    } <= written
    assert openalbert.AlbertConfig.from_pretrained(out).extra["architectures"] == [
        "AlbertForSequenceClassification"
    ]
    # The folder alone is enough: its tokenizer feeds its ONNX model, which gives the checkpoint's logits.
    texts = ["A short one.", "A rather longer sentence, padded by the other one."]
    enc = AlbertTokenizer.from_pretrained(out)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    got = onnx_session(out / "model.onnx", threads=1).run(
        enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
    )
    assert_matches(got, want, enc["attention_mask"], atol=1e-4)
    with pytest.raises(
        FileNotFoundError, match=r"it holds an ONNX export \(model.onnx\), which ONNX Runtime runs"
    ):
        openalbert.AlbertForSequenceClassification.from_pretrained(out)


def test_export_into_the_models_own_directory(tmp_path: Path) -> None:
    from openalbert.fast.onnx import export_onnx_dir

    model = openalbert.AlbertForSequenceClassification(openalbert.AlbertConfig(**TINY)).eval()
    model.save_pretrained(tmp_path)
    assert export_onnx_dir(tmp_path, tmp_path) == tmp_path
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "config.json").is_file()


def test_export_over_an_earlier_one_leaves_none_of_its_files(tmp_path: Path) -> None:
    # An earlier export's int8 model and tokenizer files were left beside the new model.onnx.
    from openalbert.fast.onnx import export_onnx_dir

    first, second = tmp_path / "mlm", tmp_path / "cls"
    openalbert.AlbertForMaskedLM(openalbert.AlbertConfig(**TINY)).save_pretrained(first)
    (first / "spiece.model").write_bytes(b"an earlier tokenizer")
    openalbert.AlbertForSequenceClassification(openalbert.AlbertConfig(**TINY)).save_pretrained(second)
    out = tmp_path / "out"
    export_onnx_dir(first, out, int8=True)
    assert {"model_int8.onnx", "spiece.model"} <= {p.name for p in out.iterdir()}
    export_onnx_dir(second, out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.onnx"]


def test_cli_unknown_model_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from openalbert.cli import main

    code = main(["export", "onnx", str(tmp_path / "absent"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("openalbert export: error:") and err.count("\n") == 1
    code = main(
        ["export", "onnx", str(tmp_path / "absent"), "--output", str(tmp_path / "out"), "--reduce-range"]
    )
    assert code == 2 and "add --int8" in capsys.readouterr().err


@pytest.mark.parametrize("quantised", ["model", "base"])
def test_int8_torch_model_is_refused_with_what_to_do(tmp_path: Path, quantised: str) -> None:
    """torch's packed int8 weights cannot be traced: the export refuses before tracing and names the ONNX
    int8 path, whether the whole model or only its base model was quantised."""
    from openalbert.fast.quantize import quantize_int8

    model = openalbert.AlbertForMaskedLM(openalbert.AlbertConfig(**TINY)).eval()
    quantize_int8(model if quantised == "model" else model.albert)
    with pytest.raises(ValueError, match="int8") as info:
        export_onnx(model, tmp_path / "model.onnx")
    message = str(info.value)
    assert "fp32" in message and "quantize_onnx_int8" in message and "--int8" in message
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("positions", ["absolute", "relative_key_query"])
@pytest.mark.parametrize("opset", [14, 20])
def test_both_ends_of_the_opset_range_export_and_match_pytorch(
    tmp_path: Path, positions: str, opset: int
) -> None:
    """The accepted range is what the exporter writes for this model: attention (scaled_dot_product_attention)
    exports from opset 14, and torch's TorchScript exporter calls opsets past 20 unsupported."""
    import warnings

    import onnx

    model = openalbert.AlbertModel(openalbert.AlbertConfig(**TINY, position_embedding_type=positions)).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export_onnx(model, tmp_path / "model.onnx", opset=opset)
    assert not [w for w in caught if "not supported" in str(w.message)]
    assert [(o.domain, o.version) for o in onnx.load(path).opset_import] == [("", opset)]
    ids, mask, types = batch("AlbertModel", 3, 11)
    with torch.no_grad():
        want = model(ids, mask, types)
    assert_matches(onnx_session(path, threads=1).run(ids, mask, types), want, mask, atol=1e-4)


@pytest.mark.parametrize("opset", [5, 13, 21, 100, "17"])
def test_opset_outside_the_range_is_refused(tmp_path: Path, opset: object) -> None:
    model = openalbert.AlbertModel(openalbert.AlbertConfig(**TINY)).eval()
    with pytest.raises(ValueError, match=rf"opset.* 14 to 20\b.*got {opset!r}"):
        export_onnx(model, tmp_path / "model.onnx", opset=opset)
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("opset", ["5", "100"])
def test_cli_bad_opset_is_one_line(tmp_path: Path, capfd: pytest.CaptureFixture, opset: str) -> None:
    from openalbert.cli import main

    openalbert.AlbertForMaskedLM(openalbert.AlbertConfig(**TINY)).save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    code = main(["export", "onnx", str(tmp_path / "model"), "--output", str(out), "--opset", opset])
    err = capfd.readouterr().err
    assert code == 2
    assert err.startswith("openalbert export: error:") and err.count("\n") == 1, err[:2000]
    assert "14 to 20" in err and f"got {opset}" in err
    assert not (out / "model.onnx").exists()
