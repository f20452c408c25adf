"""`pretrain()` and `openalbert pretrain` on real English text with the genuine ALBERT vocabulary.

The text is the licence collection every Debian system ships (/usr/share/common-licenses): real,
varied English prose that needs no download. Tests skip when it or ../shared is absent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tests.conftest import spiece_or_skip

from openalbert import AlbertConfig, AlbertForPreTraining
from openalbert.pretraining.run import pretrain, resolve_config

LICENSES = Path("/usr/share/common-licenses")
TRAIN_TEXTS = ["GPL-3", "GFDL-1.3", "Apache-2.0", "LGPL-2.1", "MPL-2.0", "GPL-2", "Artistic"]
HELDOUT_TEXTS = ["MPL-1.1", "CC0-1.0"]
ROOT = Path(__file__).resolve().parents[1]


def tiny_config(**overrides) -> AlbertConfig:
    base = dict(vocab_size=30000, embedding_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=128, max_position_embeddings=64)  # fmt: skip
    return AlbertConfig(**{**base, **overrides})


def _prepare(out: Path, names: list[str], cache: Path) -> Path:
    from openalbert.pretraining.data import prepare_pretraining_data
    from openalbert.tokenizer import AlbertTokenizer

    files = [LICENSES / n for n in names]
    if not all(f.is_file() for f in files):
        pytest.skip(f"real text for this test is missing from {LICENSES}")
    tokenizer = AlbertTokenizer.from_pretrained(spiece_or_skip().parent)
    prepare_pretraining_data(files, tokenizer, out, max_seq_length=64, dupe_factor=2, seed=1, cache_dir=cache,
                             progress=False)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def real_data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pretraining-data")
    train = _prepare(root / "train", TRAIN_TEXTS, root / "cache")
    heldout = _prepare(root / "heldout", HELDOUT_TEXTS, root / "cache")
    return train, heldout


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def test_short_run_lowers_mlm_loss_and_writes_a_model_transformers_loads(real_data, tmp_path):
    train_dir, heldout_dir = real_data
    out = tmp_path / "run"
    result = pretrain(
        train_dir, out, tiny_config(), tokenizer=spiece_or_skip().parent, max_steps=40, batch_size=16,
        learning_rate=1e-2, warmup_steps=4, device="cpu", save_every=20, eval_dir=heldout_dir, progress=False,
    )  # fmt: skip
    assert result.step == 40 and not result.interrupted
    rows = [r for r in _rows(out) if "loss" in r]
    first, last = _mean(rows[:5], "mlm_loss"), _mean(rows[-5:], "mlm_loss")
    assert first > 9.5  # about ln(30000) = 10.3 at initialisation
    # (1.5 with the linear schedule; the default, ALBERT's polynomial one, decays from step 0 and trains
    # this short run about 10% less: 1.49 then.)
    assert last < first - 1.3, (first, last)
    assert result.metrics["eval_mlm_loss"] < first - 1.0
    for name in ("config.json", "model.safetensors", "spiece.model", "tokenizer_config.json", "curves.png"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "step-00000020" / "spiece.model").is_file()

    # The output directory is an HF checkpoint: transformers (the oracle) loads it and agrees with us.
    import transformers

    ours = AlbertForPreTraining.from_pretrained(out).eval()
    theirs = transformers.AlbertForPreTraining.from_pretrained(out).eval()
    tokenizer = transformers.AlbertTokenizer.from_pretrained(out)
    batch = tokenizer(["This License applies to any program."], return_tensors="pt")
    with torch.no_grad():
        a, b = ours(**batch), theirs(**batch)
    torch.testing.assert_close(a.prediction_logits, b.prediction_logits, atol=1e-4, rtol=1e-4)

    # Continuing from that model brings its tokenizer along; a run with none at all says what it lacks
    # (before, its models silently had no tokenizer files, and `openalbert run` could not use them).
    more = pretrain(train_dir, tmp_path / "more", init_from=out, max_steps=1, batch_size=4, device="cpu",
                    save_every=0, progress=False)  # fmt: skip
    assert (more.output_dir / "spiece.model").is_file()
    with pytest.warns(UserWarning, match="no tokenizer given"):
        pretrain(train_dir, tmp_path / "bare", tiny_config(), max_steps=1, batch_size=4, device="cpu",
                 save_every=0, progress=False)  # fmt: skip


@pytest.mark.slow
def test_longer_run_learns_real_text(real_data, tmp_path):
    train_dir, heldout_dir = real_data
    out = tmp_path / "run"
    result = pretrain(
        train_dir, out, tiny_config(), max_steps=300, batch_size=16, learning_rate=1e-2, warmup_steps=20,
        device="cpu", save_every=0, eval_dir=heldout_dir, eval_every=100, progress=False,
    )  # fmt: skip
    rows = [r for r in _rows(out) if "loss" in r]
    # Measured: mlm_loss 10.3 -> about 5.8 and accuracy 0 -> about 6% (frequent words) in 300 steps.
    assert _mean(rows[-20:], "mlm_loss") < _mean(rows[:5], "mlm_loss") - 4.0
    assert _mean(rows[-20:], "mlm_accuracy") > 0.04
    evals = [r for r in _rows(out) if "eval_loss" in r]
    # Held-out licences: the loss falls well below its start, though 3 epochs of 2.6k examples overfit.
    assert evals[-1]["eval_mlm_accuracy"] > 0.03
    assert evals[-1]["eval_mlm_loss"] < _mean(rows[:5], "mlm_loss") - 2.5
    assert result.metrics["eval_mlm_accuracy"] == evals[-1]["eval_mlm_accuracy"]


def test_vocabulary_and_length_mismatches_are_clear_errors(real_data, tmp_path):
    train_dir, _ = real_data
    with pytest.raises(ValueError, match=r"vocab_size is 1000 .* 30000"):
        pretrain(train_dir, tmp_path / "a", tiny_config(vocab_size=1000), max_steps=1)
    with pytest.raises(ValueError, match="seq_len 128 differs"):
        pretrain(train_dir, tmp_path / "b", tiny_config(), seq_len=128, max_steps=1)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        pretrain(train_dir, tmp_path / "c", tiny_config(max_position_embeddings=32), max_steps=1)
    with pytest.raises(ValueError, match="only one of"):
        resolve_config(tiny_config(), "albert-base-v2", None, 30000, 64)
    # A preset takes the data's vocabulary size.
    assert resolve_config(None, "albert-base-v2", None, 16000, 64).vocab_size == 16000
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        pretrain(tmp_path, tmp_path / "d", tiny_config(), max_steps=1)
    # evaluation data the model cannot take is refused before training, not after it
    from openalbert.pretraining.data import prepare_pretraining_data
    from openalbert.tokenizer import AlbertTokenizer

    long_eval = tmp_path / "eval-128"
    prepare_pretraining_data([LICENSES / n for n in HELDOUT_TEXTS], AlbertTokenizer.from_pretrained(spiece_or_skip().parent),
                             long_eval, max_seq_length=128, dupe_factor=1, seed=1, progress=False)  # fmt: skip
    with pytest.raises(
        ValueError, match="holds examples of 128 tokens, more than the model's max_position_embeddings"
    ):
        pretrain(train_dir, tmp_path / "e", tiny_config(), max_steps=1, eval_dir=long_eval)
    assert not (tmp_path / "e" / "metrics.jsonl").exists()
    with pytest.raises(ValueError, match=r"eval_every \(--eval-every\) evaluates on held-out examples"):
        pretrain(train_dir, tmp_path / "f", tiny_config(), max_steps=1, eval_every=1)  # (before: ignored)
    (tmp_path / "a.txt").write_text("text")
    with pytest.raises(ValueError, match="a.txt is a file; give a directory"):  # (before: "[Errno 17]")
        pretrain(train_dir, tmp_path / "a.txt", tiny_config(), max_steps=1)


def test_raw_corpus_is_prepared_into_the_run_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENALBERT_CACHE", str(tmp_path / "cache"))
    if not (LICENSES / "GPL-3").is_file():
        pytest.skip(f"real text for this test is missing from {LICENSES}")
    out = tmp_path / "run"
    result = pretrain(
        None, out, tiny_config(), corpus=[LICENSES / "GPL-3"], tokenizer=spiece_or_skip().parent, seq_len=64,
        dupe_factor=1, max_steps=2, batch_size=4, device="cpu", progress=False,
    )  # fmt: skip
    assert result.step == 2
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["max_seq_length"] == 64 and manifest["num_examples"] > 8
    with pytest.raises(ValueError, match="needs a tokenizer"):
        pretrain(None, tmp_path / "x", tiny_config(), corpus=[LICENSES / "GPL-3"], max_steps=1)
    # resumed, the run reuses its examples: from the same text and options only (before, silently the old ones)
    options = dict(tokenizer=spiece_or_skip().parent, seq_len=64, batch_size=4, device="cpu", progress=False)
    (tmp_path / "more.txt").write_text((LICENSES / "GPL-3").read_text())
    other = [LICENSES / "GPL-3", tmp_path / "more.txt"]
    for corpus, dupe in ((other, 1), ([LICENSES / "GPL-3"], 2)):
        with pytest.raises(ValueError, match="were prepared with (files|dupe_factor)"):
            pretrain(
                None, out, tiny_config(), corpus=corpus, dupe_factor=dupe, max_steps=3, resume=True, **options
            )
    again = pretrain(
        None,
        out,
        tiny_config(),
        corpus=[LICENSES / "GPL-3"],
        dupe_factor=1,
        max_steps=3,
        resume=True,
        **options,
    )
    assert again.step == 3


def _cli(*args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from openalbert.cli import main; sys.exit(main())",
        "pretrain",
        *args,
    ]


def test_cli_sigint_saves_and_resume_finishes(real_data, tmp_path):
    train_dir, _ = real_data
    config = tmp_path / "config.json"
    tiny_config().save_pretrained(tmp_path)
    out = tmp_path / "run"
    common = ["--data", str(train_dir), "--output", str(out), "--config", str(config), "--batch-size", "4",
              "--device", "cpu", "--save-every", "1000", "--no-progress", "--threads", "1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        _cli(*common, "--max-steps", "100000"), env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.jsonl").is_file() or len(_rows(out)) < 2:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the run logged no steps in time"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 130, proc.stderr.read()
    checkpoints = sorted((out / "checkpoints").iterdir())
    assert len(checkpoints) == 1
    stopped_at = int(checkpoints[0].name.split("-")[1])
    assert stopped_at >= 2 and len(_rows(out)) == stopped_at

    done = subprocess.run(_cli(*common, "--max-steps", str(stopped_at + 2), "--resume"), env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"step {stopped_at + 2}:" in done.stdout
    assert [r["step"] for r in _rows(out)] == list(range(1, stopped_at + 3))


def test_cli_cuda_graphs_need_a_cuda_device(real_data, tmp_path):
    train_dir, _ = real_data
    tiny_config().save_pretrained(tmp_path)
    args = ["--data", str(train_dir), "--output", str(tmp_path / "run"), "--config", str(tmp_path / "config.json"),
            "--device", "cpu", "--cuda-graphs", "--max-steps", "2", "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(_cli(*args), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "openalbert pretrain: error: cuda_graphs needs a CUDA device; this run trains on cpu"
    ], done.stderr
