"""The installed `openalbert run` and `openalbert info` commands, run in a subprocess on tiny checkpoints:
stdin and files in, one JSON document per line out, in order; bad input gives one line on stderr and a
non-zero exit, or an error document per bad line with --skip-bad-lines."""

from __future__ import annotations

import io
import json
import logging
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.conftest import TINY_GENUINE_VOCAB, spiece_or_skip

import openalbert
from openalbert.pipelines import pipeline

pytestmark = pytest.mark.needs_shared

CONFIG = TINY_GENUINE_VOCAB
LINES = [
    "Plants create [MASK] through a process known as photosynthesis.",
    "Hello [MASK]!",
    "The [MASK] of France is [MASK] .",
]


def _executable() -> str:
    beside = Path(sys.executable).parent / "openalbert"
    found = str(beside) if beside.is_file() else shutil.which("openalbert")
    if found is None:
        pytest.skip("the openalbert command is not installed (pip install -e .)")
    return found


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random checkpoints saved by openalbert itself, each with the genuine tokenizer."""
    from openalbert.tokenizer import AlbertTokenizer

    tokenizer = AlbertTokenizer.from_pretrained(spiece_or_skip())
    root = tmp_path_factory.mktemp("cli")
    out = {}
    heads = (
        "AlbertForMaskedLM",
        "AlbertForQuestionAnswering",
        "AlbertForSequenceClassification",
        "AlbertForMultipleChoice",
        "AlbertForTokenClassification",
    )
    for head in heads:
        torch.manual_seed(0)
        model = getattr(openalbert, head)(openalbert.AlbertConfig(**CONFIG))
        if head == "AlbertForMaskedLM":
            with torch.no_grad():
                model.predictions.bias.normal_(0, 2)  # distinct scores, a stable ranking
        out[head] = root / head
        model.save_pretrained(out[head])
        tokenizer.save_pretrained(out[head], write_tokenizer_json=False)  # spiece.model is enough
    return out


def openalbert_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_executable(), *args], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def in_process(
    *args: str, stdin: str = "", capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> subprocess.CompletedProcess:
    """`openalbert ARGS` through the same entry point, in this process (no interpreter start-up)."""
    from openalbert.cli import main

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8")), encoding="utf-8"))
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


def assert_close(a: Any, b: Any) -> None:
    """Equal JSON documents, floats within 1e-5 (batches differ between the CLI and the in-process run)."""
    if isinstance(b, float):
        assert math.isclose(a, b, abs_tol=1e-5), (a, b)
    elif isinstance(b, dict):
        assert list(a) == list(b)
        for key in b:
            assert_close(a[key], b[key])
    elif isinstance(b, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_close(x, y)
    else:
        assert a == b


def test_fill_mask_through_stdin(models) -> None:
    model = models["AlbertForMaskedLM"]
    done = openalbert_cli(
        "run", "--task", "fill-mask", "--model", str(model), "--top-k", "2", stdin="\n".join(LINES)
    )
    assert done.returncode == 0, done.stderr
    docs = [json.loads(line) for line in done.stdout.splitlines()]
    fill = pipeline("fill-mask", model=model)
    assert len(docs) == len(LINES)
    for line, doc in zip(LINES, docs):
        assert_close(doc, fill(line, top_k=2))
    assert done.stderr == ""  # a short stdin shows no progress bar


def test_files_in_and_out_stream_in_order(models, tmp_path: Path) -> None:
    # More lines than one chunk (256), each identifiable, to check the order across chunks.
    lines = [f"Sentence {i} has a [MASK] in it." for i in range(300)]
    source, target = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = openalbert_cli(
        "run", "--task", "fill-mask", "--model", str(models["AlbertForMaskedLM"]), "--top-k", "1",
        "--batch-size", "16", "--input", str(source), "--output", str(target),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # results go to the file only
    docs = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert len(docs) == len(lines)
    for i, doc in enumerate(docs):
        assert len(doc) == 1 and doc[0]["sequence"].startswith(f"sentence {i} has a")


def test_the_output_may_not_be_the_input(models, tmp_path: Path, capsys, monkeypatch) -> None:
    # the output file is emptied when opened: writing over the input would lose both
    source = tmp_path / "same.txt"
    source.write_text("Hello [MASK]!\n", encoding="utf-8")
    (tmp_path / "link.txt").symlink_to(source)
    for target in (source, tmp_path / "link.txt"):
        done = in_process(
            "run", "--task", "fill-mask", "--model", str(models["AlbertForMaskedLM"]),
            "--input", str(source), "--output", str(target), capsys=capsys, monkeypatch=monkeypatch,
        )  # fmt: skip
        assert done.returncode == 2 and "is the input file" in done.stderr
        assert source.read_text(encoding="utf-8") == "Hello [MASK]!\n"


def test_question_answering_json_lines(models, capsys, monkeypatch) -> None:
    model = models["AlbertForQuestionAnswering"]
    inputs = [
        {
            "question": "Who built it?",
            "context": "Gustave Eiffel built the tower in Paris from 1887 to 1889.",
        },
        {"question": "Where?", "context": "The tower stands in Paris, France."},
    ]
    done = in_process(
        "run", "--task", "question-answering", "--model", str(model), "--top-k", "2",
        stdin="\n".join(json.dumps(x) for x in inputs) + "\n", capsys=capsys, monkeypatch=monkeypatch,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    docs = [json.loads(line) for line in done.stdout.splitlines()]
    qa = pipeline("question-answering", model=model)
    assert_close(docs, [qa(x, top_k=2) for x in inputs])


def test_bad_lines_stop_the_run_or_are_skipped(models) -> None:
    model = str(models["AlbertForMaskedLM"])
    lines = [LINES[0], "this line has no mask", LINES[1]]
    done = openalbert_cli("run", "--task", "fill-mask", "--model", model, stdin="\n".join(lines))
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "line 2" in done.stderr and "[MASK]" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stdout.splitlines()) == 1  # the line before the bad one was written
    skipped = openalbert_cli(
        "run", "--task", "fill-mask", "--model", model, "--skip-bad-lines", stdin="\n".join(lines)
    )
    assert skipped.returncode == 0, skipped.stderr
    docs = [json.loads(line) for line in skipped.stdout.splitlines()]
    assert len(docs) == 3 and docs[1]["line"] == 2 and "no [MASK]" in docs[1]["error"]
    assert isinstance(docs[0], list) and isinstance(docs[2], list)


def test_json_lines_that_do_not_parse(models, capsys, monkeypatch) -> None:
    model = str(models["AlbertForQuestionAnswering"])
    good = json.dumps({"question": "Who?", "context": "Gustave Eiffel built it."})
    stdin = "\n".join([good, "{not json", '["a list"]', good]) + "\n"
    run = ("run", "--task", "question-answering", "--model", model)
    done = in_process(*run, stdin=stdin, capsys=capsys, monkeypatch=monkeypatch)
    assert done.returncode != 0 and "line 2: not valid JSON" in done.stderr
    skipped = in_process(*run, "--skip-bad-lines", stdin=stdin, capsys=capsys, monkeypatch=monkeypatch)
    docs = [json.loads(line) for line in skipped.stdout.splitlines()]
    assert [("error" in d) for d in docs] == [False, True, True, False]
    assert docs[0] == docs[3]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "translation", "--model", "{MLM}"], "unknown task 'translation'"),
        (["--task", "fill-mask", "--model", "{CLS}"], "no masked-LM head"),
        (["--task", "fill-mask", "--model", "{MLM}", "--input", "/no/such/file.txt"], "does not exist"),
        (
            ["--task", "feature-extraction", "--model", "{MLM}", "--top-k", "3"],
            "unknown parameters ['top_k']",
        ),
        (["--task", "fill-mask", "--model", "{MLM}", "--device", "tpu"], "unknown device 'tpu'"),
        pytest.param(
            ["--task", "fill-mask", "--model", "{MLM}", "--device", "cuda"],
            "device 'cuda' was requested, but torch",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
        ),
        (
            ["--task", "feature-extraction", "--model", "{MLM}", "--param", "return_tensors=true"],
            "return_tensors=true gives torch tensors, which a JSON line cannot hold",
        ),
        (
            ["--task", "fill-mask", "--model", "{MLM}", "--param", "top_k=true"],
            "top_k must be an integer >= 0, got True",
        ),
        (
            ["--task", "question-answering", "--model", "{QA}", "--param", "align_to_words=maybe"],
            "align_to_words must be a boolean (true/false, yes/no, on/off or 1/0), got 'maybe'",
        ),
        # run's own settings (before: a traceback, or chunk_lines taken silently)
        (
            ["--task", "fill-mask", "--model", "{MLM}", "--param", "quantization=int8"],
            "--param cannot set 'quantization': it is openalbert run's own setting (see --quantize in --help)",
        ),
        (
            ["--task", "fill-mask", "--model", "{MLM}", "--param", "batch_size=4"],
            "--param cannot set 'batch_size': it is openalbert run's own setting (see --batch-size in --help)",
        ),
        (
            ["--task", "fill-mask", "--model", "{MLM}", "--param", "chunk_lines=-1"],
            "--param cannot set 'chunk_lines'",
        ),
        (
            ["--task", "fill-mask", "--model", "{MLM}", "--top-k", "2", "--param", "top_k=3"],
            "top_k is given twice",
        ),
    ],
    ids=[
        "unknown-task",
        "missing-head",
        "missing-input",
        "bad-option",
        "unknown-device",
        "no-cuda",
        "return-tensors",
        "bool-top-k",
        "bool-word",
        "own-setting-named-otherwise",
        "own-setting",
        "internal-setting",
        "top-k-twice",
    ],
)
def test_errors_are_one_line(models, capsys, monkeypatch, args: list[str], message: str) -> None:
    names = {
        "{MLM}": models["AlbertForMaskedLM"],
        "{CLS}": models["AlbertForSequenceClassification"],
        "{QA}": models["AlbertForQuestionAnswering"],
    }
    args = [str(names.get(a, a)) for a in args]
    done = in_process("run", *args, stdin="Hello [MASK]!\n", capsys=capsys, monkeypatch=monkeypatch)
    assert done.returncode == 2
    assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert done.stdout == ""


def test_json_lines_skip_blank_lines_and_a_byte_order_mark(models, capsys, monkeypatch) -> None:
    qa = {"question": "Who built it?", "context": "Gustave Eiffel built the tower in Paris."}
    mc = {"prompt": "The cat sat on the", "choices": ["mat.", "moon."]}
    for task, head, item in (
        ("question-answering", "AlbertForQuestionAnswering", qa),
        ("multiple-choice", "AlbertForMultipleChoice", mc),
    ):
        run = ("run", "--task", task, "--model", str(models[head]))
        line = json.dumps(item)
        # a BOM (Windows editors), a blank and a whitespace-only line inside, a trailing blank line
        stdin = "\ufeff" + line + "\n\n  \r\n" + line + "\n\n"
        done = in_process(*run, stdin=stdin, capsys=capsys, monkeypatch=monkeypatch)
        assert done.returncode == 0, done.stderr
        expected = pipeline(task, model=models[head])(item)
        docs = [json.loads(doc) for doc in done.stdout.splitlines()]
        assert len(docs) == 2
        for doc in docs:
            assert_close(doc, expected)
        # an error names the line of the input, blank lines counted
        done = in_process(*run, stdin=line + "\n\n{bad\n", capsys=capsys, monkeypatch=monkeypatch)
        assert done.returncode == 2 and "line 3: not valid JSON" in done.stderr, done.stderr


def test_text_lines_keep_blank_lines(models, capsys, monkeypatch) -> None:
    # In a text task a blank line is the empty text, so that output line n answers input line n.
    model = models["AlbertForSequenceClassification"]
    texts = ["I love it", "", "meh"]
    done = in_process(
        "run", "--task", "text-classification", "--model", str(model),
        stdin="\ufeff" + "\n".join(texts) + "\n", capsys=capsys, monkeypatch=monkeypatch,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    classify = pipeline("text-classification", model=model)
    assert_close([json.loads(doc) for doc in done.stdout.splitlines()], [classify(t) for t in texts])


def test_text_pair_null_is_a_single_text(models, capsys, monkeypatch) -> None:
    model = models["AlbertForSequenceClassification"]
    done = in_process(
        "run", "--task", "text-classification", "--model", str(model),
        stdin='{"text": "I love it", "text_pair": null}\n', capsys=capsys, monkeypatch=monkeypatch,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert_close(json.loads(done.stdout), pipeline("text-classification", model=model)({"text": "I love it"}))


def test_a_multiple_choice_fine_tuning_line_runs_as_it_is(models, capsys, monkeypatch) -> None:
    # {context, question, choices, label}, as finetune reads it: the prompt is context and question
    model = models["AlbertForMultipleChoice"]
    line = {
        "context": "It rained.",
        "question": "What got wet?",
        "choices": ["The street", "The moon"],
        "label": 0,
    }
    done = in_process(
        "run", "--task", "multiple-choice", "--model", str(model),
        stdin=json.dumps(line) + "\n" + json.dumps(line | {"context": ""}) + "\n", capsys=capsys, monkeypatch=monkeypatch,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    choose = pipeline("multiple-choice", model=model)
    got = [json.loads(row) for row in done.stdout.splitlines()]
    expected = [
        choose({"prompt": "It rained. What got wet?", "choices": line["choices"]}),
        choose({"prompt": "What got wet?", "choices": line["choices"]}),
    ]
    assert_close(got, expected)


def test_pre_split_words_and_dash_for_stdin_and_stdout(models, capsys, monkeypatch) -> None:
    # is_split_into_words takes a JSON array of words a line; "-" names stdin and stdout
    model = models["AlbertForTokenClassification"]
    words = ["John", "lives", "in", "Berlin"]
    done = in_process(
        "run", "--task", "token-classification", "--model", str(model), "--param", "is_split_into_words=true",
        "--input", "-", "--output", "-", stdin=json.dumps(words) + "\n", capsys=capsys, monkeypatch=monkeypatch,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = pipeline("token-classification", model=model)(words, is_split_into_words=True)
    assert_close([json.loads(done.stdout)], expected)  # (a list of words alone is a batch of one there)


def test_a_fine_tuning_file_runs_as_it_is(models, capsys, monkeypatch) -> None:
    # a labelled line of the JSONL that finetune reads: the label is not part of the input
    model = models["AlbertForSequenceClassification"]
    done = in_process(
        "run", "--task", "text-classification", "--model", str(model),
        stdin='{"text": "I love it", "label": 1}\n{"text": "a", "text_pair": "b", "label": 0}\n',
        capsys=capsys, monkeypatch=monkeypatch,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pipe = pipeline("text-classification", model=model)
    got = [json.loads(line) for line in done.stdout.splitlines()]
    assert_close(got, [pipe({"text": "I love it"}), pipe({"text": "a", "text_pair": "b"})])


@pytest.mark.parametrize("word, value", [("no", False), ("off", False), ("yes", True), ("ON", True)])
def test_boolean_params_are_words(models, capsys, monkeypatch, word: str, value: bool) -> None:
    # A bare string is no boolean: bool("no") is True, which turned the impossible answer on.
    model = models["AlbertForQuestionAnswering"]
    item = {"question": "Who?", "context": "Jane wrote it."}
    done = in_process(
        "run", "--task", "question-answering", "--model", str(model), "--top-k", "30",
        "--param", f"handle_impossible_answer={word}",
        stdin=json.dumps(item) + "\n", capsys=capsys, monkeypatch=monkeypatch,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    qa = pipeline("question-answering", model=model)
    expected = qa(item, top_k=30, handle_impossible_answer=value)
    assert_close(json.loads(done.stdout), expected)
    # the impossible answer: empty, at 0, scored from [CLS]
    assert any(a["answer"] == "" and a["end"] == 0 and a["score"] > 0 for a in expected) == value


def test_a_parameter_warns_once_per_stream(models, tmp_path: Path, caplog) -> None:
    # The stream checks its parameters once, not again for every chunk of lines.
    from openalbert.pipelines.stream import run_stream

    source, target = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="openalbert"):
        bad = run_stream(
            "fill-mask", models["AlbertForMaskedLM"], input_path=source, output_path=target,
            chunk_lines=1, progress=False, targets=["Rome", "paris"],
        )  # fmt: skip
    assert bad == 0 and len(target.read_text(encoding="utf-8").splitlines()) == len(LINES)
    assert sum("'Rome' is not in the vocabulary" in r.getMessage() for r in caplog.records) == 1


def test_default_model_or_a_clear_error(capsys, monkeypatch) -> None:
    from openalbert.checkpoint import DEFAULT_MODEL_DIR

    done = in_process(
        "run", "--task", "fill-mask", stdin="Hello [MASK]!\n", capsys=capsys, monkeypatch=monkeypatch
    )
    if (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        assert done.returncode == 0 and json.loads(done.stdout)[0]["sequence"]
    else:
        assert done.returncode == 2 and "model.safetensors" in done.stderr and "--model" in done.stderr


def test_info(models, capsys, monkeypatch) -> None:
    model = models["AlbertForMaskedLM"]
    done = openalbert_cli("info", str(model))
    assert done.returncode == 0, done.stderr
    count = openalbert.AlbertForMaskedLM.from_pretrained(model).num_parameters()
    assert f"{count:,}" in done.stdout and "fill-mask" in done.stdout and "spiece.model" in done.stdout
    info = json.loads(in_process("info", str(model), "--json", capsys=capsys, monkeypatch=monkeypatch).stdout)
    assert info["parameters"] == count and info["config"]["hidden_size"] == 32
    assert "model.safetensors" in info["files"]
    # Which attention CPU inference runs: this tiny model's heads are too small for the kernel ...
    assert info["cpu_attention"] == "PyTorch's kernels (heads of 8, not a multiple of 16)"
    assert "cpu attention" in done.stdout
    # ... the embedded model's are not.
    from openalbert import cpu_kernels, packed_attention
    from openalbert.pipelines.info import model_info

    expected = "compiled kernel, built at" if packed_attention.available() else "PyTorch's kernels"
    assert model_info(openalbert.DEFAULT_MODEL)["cpu_attention"].startswith(expected)
    # Which GEMMs fp32 runs on here; what bf16 and int8 do on this CPU, from its flags.
    expected = (
        "oneDNN"
        if cpu_kernels.has_avx512()
        else "compiled AVX2"
        if cpu_kernels.linear_available()
        else "PyTorch's GEMMs"
    )
    assert model_info(model)["cpu_fp32"].startswith(expected)
    assert "cpu fp32" in done.stdout and "cpu bf16" in done.stdout and "cpu int8" in done.stdout
    for flags, kernel, bf16, int8 in [
        ({"avx2"}, False, "emulated", "7-bit"),
        ({"avx2"}, True, "about float32's speed, in fp32 arithmetic", "7-bit"),
        ({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}, False, "native (AVX512_BF16)", "8-bit"),
        (set(), False, "unknown", "7-bit"),
    ]:
        monkeypatch.setattr(cpu_kernels, "cpu_flags", lambda flags=flags: frozenset(flags))
        monkeypatch.setattr(cpu_kernels, "linear_available", lambda kernel=kernel: kernel)
        info = model_info(model)
        assert info["cpu_bf16"].startswith(bf16) and info["cpu_int8"].startswith(int8), info


@pytest.mark.parametrize("framework", ["tf", "flax"])
def test_framework_option_runs_the_tf_or_flax_classes(models, capsys, monkeypatch, framework) -> None:
    pytest.importorskip({"tf": "tensorflow", "flax": "flax"}[framework])
    model = str(models["AlbertForMaskedLM"])
    args = ("run", "--task", "fill-mask", "--model", model, "--top-k", "2")
    done = in_process(
        *args, "--framework", framework, stdin="\n".join(LINES), capsys=capsys, monkeypatch=monkeypatch
    )
    assert done.returncode == 0, done.stderr
    expected = in_process(*args, stdin="\n".join(LINES), capsys=capsys, monkeypatch=monkeypatch)
    for got, want in zip(done.stdout.splitlines(), expected.stdout.splitlines(), strict=True):
        assert_close(json.loads(got), json.loads(want))
    refused = in_process(
        *args,
        "--framework",
        framework,
        "--dtype",
        "bfloat16",
        stdin=LINES[0],
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    assert refused.returncode != 0 and "apply to PyTorch models" in refused.stderr
