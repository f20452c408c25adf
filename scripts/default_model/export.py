"""Export a pretraining run as openalbert's embedded default model, and write its model card.

Reads the run's final model (or its newest checkpoint), stores the weights in float16 with the
tokenizer into the package, measures held-out masked-token accuracy with
benchmarks/eval_default_model.py, and writes README.md (the model card) and curves.png beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from openalbert import AlbertForPreTraining
from openalbert.tokenizer import AlbertTokenizer
from openalbert.training.loop import latest_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Stage:
    """One pretraining stage of the shipped model, as scripts/default_model/train.sh replays it."""

    steps: int
    batch: int
    schedule: str  # optimizer and rate
    data: str
    where: str
    outcome: str


# Each stage continues from the one before (`--init-from`); the last is the exported one. Sequences of 128.
STAGES = (
    Stage(
        5100,
        512,
        "AdamW 1e-3 (warm-up 500), of a 12,000-step schedule; from random weights",
        "examples10 (the prose and the movie reviews, fresh masks)",
        "1 H200 GPU shared with another run, bf16, 8.9 min",
        "held-out accuracy 0.410 on the prose, rate still 6e-4",
    ),
    Stage(
        6800,
        512,
        "AdamW 6e-4 (warm-up 300, fresh optimizer state) to zero",
        "examples10",
        "1 H200 GPU, bf16, 8.5 min",
        "exported",
    ),
)
# The narrower model shipped before this one (H=256, 3.1M parameters; commit 46719b5 has its card and
# recipe) spent its first 7,680 steps of 64 (63 million token positions) with absolute position
# embeddings, on the plateau that the card's section on relative positions describes.
PREDECESSOR_PLATEAU_STEPS = 7680


def newest_model(run: Path) -> Path:
    checkpoint = latest_checkpoint(run)
    if checkpoint is not None and (
        not (run / "config.json").exists()
        or checkpoint.stat().st_mtime > (run / "model.safetensors").stat().st_mtime
    ):
        return checkpoint
    if (run / "config.json").exists():
        return run
    raise FileNotFoundError(f"no model or checkpoint in {run}")


def read_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=ROOT / "src/openalbert/default_model")
    parser.add_argument("--corpora", type=Path, default=ROOT / "work_data/corpora")
    parser.add_argument("--skip-eval", action="store_true")
    args = parser.parse_args()

    source = newest_model(args.run)
    model = AlbertForPreTraining.from_pretrained(source, strict=True).to(torch.float16)
    tokenizer = AlbertTokenizer.from_pretrained(source)
    out = args.output
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out, write_tokenizer_json=False)  # transformers builds it from spiece.model
    if (args.run / "curves.png").exists():
        shutil.copy2(args.run / "curves.png", out / "curves.png")

    heldout = sorted(str(p) for p in (args.corpora / "heldout").glob("*.txt"))
    accuracy = measure(
        "benchmarks/eval_default_model.py", out, heldout, "default_model_accuracy.json", args.skip_eval
    )
    probe = measure(
        "scripts/default_model/attention_probe.py",
        out,
        heldout,
        "default_model_attention.json",
        args.skip_eval,
    )
    corpora = json.loads((args.corpora / "corpora.json").read_text())["sources"]
    card = render_card(model, read_metrics(args.run), accuracy, probe or [], corpora, source)
    (out / "README.md").write_text(card)
    print(f"exported {source} -> {out}")


def measure(script: str, model_dir: Path, heldout: list[str], result: str, skip: bool) -> Any:
    """Run a measuring script (`--model --heldout --output`) on the exported model, unless `skip`, and
    return the JSON it wrote to benchmarks/`result` (from an earlier run when skipped; None if none)."""
    path = ROOT / "benchmarks" / result
    if not skip:
        command = [sys.executable, str(ROOT / script), "--model", str(model_dir), "--heldout", *heldout]
        subprocess.run([*command, "--output", str(path)], check=True)
    return json.loads(path.read_text()) if path.exists() else None


def render_card(
    model, metrics: list[dict], accuracy: dict | None, probe: list[dict], corpora: dict, source: Path
) -> str:
    cfg = model.config
    train_rows = [m for m in metrics if "loss" in m]
    evals = [m for m in metrics if "eval_loss" in m]
    last = train_rows[-1] if train_rows else {}
    last_eval = evals[-1] if evals else {}
    if last.get("step") != STAGES[-1].steps:
        raise SystemExit(
            f"the run ends at step {last.get('step')}; STAGES says {STAGES[-1].steps}: update it"
        )
    positions_m = sum(stage.steps * stage.batch * 128 for stage in STAGES) / 1e6  # sequences of 128
    stages = "\n".join(
        f"| {i} | {st.steps:,} x {st.batch} | {st.schedule} | {st.data} | {st.where} | {st.outcome} |"
        for i, st in enumerate(STAGES, 1)
    )
    train_mb = sum(s["bytes"] for s in corpora.values()) / 1e6
    sources = "\n".join(
        f"| {name} | {', '.join(s['packages'])} ({s['client']}) | {s['documents']} | {s['bytes'] / 1e6:.1f} | "
        f"{s['heldout_documents']} | {s['licence']} |"
        for name, s in corpora.items()
    )
    acc = (
        f"**{accuracy['accuracy']:.3f}** top-1 on {accuracy['masked_tokens']:,} masked tokens "
        f"({accuracy['tokens']:,} held-out tokens, 15% masked, 128-token windows, seed {accuracy.get('seed', 0)})"
        if accuracy
        else "not measured yet"
    )
    return f"""# albert-small-en: openalbert's embedded default model

A small English ALBERT, pretrained from scratch by openalbert's own pipeline on public-domain and
CC BY-SA text that the package registries carry. It is what `openalbert run --task fill-mask` and
`openalbert.pipeline("fill-mask")` use when no model is named, with no network. Load it with
`from_pretrained(openalbert.DEFAULT_MODEL)` or from this directory (transformers 4.57.1 loads it too).

## Architecture
ALBERT with E={cfg.embedding_size}, H={cfg.hidden_size}, {cfg.num_hidden_layers} layers sharing one group,
{cfg.num_attention_heads} heads, FFN {cfg.intermediate_size}, {cfg.hidden_act}, {cfg.vocab_size:,}-piece
SentencePiece unigram vocabulary (lower-cased, accents stripped: ALBERT's normalisation), max 512 positions,
position information as `position_embedding_type="{cfg.position_embedding_type}"`{_position_note(cfg)}.
{model.num_parameters():,} parameters, stored in float16 (loaded as float32 unless `dtype=` says otherwise).
The checkpoint is an `AlbertForPreTraining` (MLM and sentence-order heads, pooler included).

## Data
`openalbert fetch-corpus` (src/openalbert/pretraining/corpora.py) downloads and cleans:

| source | package | train docs | train MB | held-out docs | licence |
|---|---|---|---|---|---|
{sources}

About 2.5% of whole documents (by a hash of the document id) are held out: never used for the
vocabulary or the pretraining, only for the accuracy below.

## Training
`scripts/default_model/train.sh` runs each step (rerunning it resumes):
1. `openalbert train-tokenizer --input PROSE --output work_data/vocab --vocab-size 16000`, where PROSE is
   the training files of every source above but the movie reviews (the vocabulary was made for the
   narrower model before this one, whose pretraining took the reviews in only at its last stage);
2. `openalbert prepare-data --corpus TRAIN --tokenizer work_data/vocab --output work_data/examples10
   --max-seq-length 128 --dupe-factor 32 --seed 81 --no-whole-word-mask`, TRAIN being every training file
   above: 2.26M sentence-order pairs with 15% of the pieces masked one by one (80/10/10), as BERT did and
   as the held-out accuracy below masks;
3. `openalbert pretrain --config scripts/default_model/config_wide.json --data work_data/examples10 ...`
   (MLM + SOP, AdamW, batch 512, bf16 autocast) in two stages on one GPU, the second continuing from the
   first (`--init-from`); `scripts/default_model/gpu_stage.sh` sized each to a time budget:

| stage | steps x batch | optimizer, rate | examples | where | outcome |
|---|---|---|---|---|---|
{stages}

In all {positions_m:,.0f} million token positions (sequences of 128). Stage {len(STAGES)}'s final model,
`{source.name}`, is exported here in float16. Its last logged training row: {_fmt(last)}.
Its last held-out evaluation (prepared examples, whole-word masked): {_fmt(last_eval)}.

![loss curves of stage {len(STAGES)}](curves.png)

## Held-out masked-token accuracy
{acc}; measured by `benchmarks/eval_default_model.py` (result in benchmarks/default_model_accuracy.json).
The narrower model shipped before this one (H=256, 3.1M parameters, 930 million token positions) scored
0.418 on the same tokens.

## Attention
`scripts/default_model/attention_probe.py` on 64 held-out windows of 128 tokens (chance: {1 / 128:.4f}; entropy
as a share of uniform attention's; written to benchmarks/default_model_attention.json):

{_probe_table(probe)}

## Why relative positions, and how more compute raises the accuracy
Masked-LM training starts with a phase in which the model predicts from word frequencies and from which
words are in view, not from where they are: every head attends almost uniformly. With ALBERT's absolute
position embeddings the narrower model before this one stayed in that phase for
{PREDECESSOR_PLATEAU_STEPS:,} steps of 64: `scripts/default_model/attention_probe.py` found no head attending
to the previous or next token more than chance, and the position embeddings shrank under weight decay.
Lower rates, sinusoidal position embeddings and piece-level masking did not get it out within a few hundred
steps each. A relative position score lets a head learn "look one token to the left" from a single distance
vector and its query bias, and that model left the phase at once; this one has used relative positions
from its first step. transformers 4.57.1 computes these scores as openalbert does (the test suite checks
the logits); transformers v5 ignores the setting, so load this model with v4 or openalbert.

The model has seen about {positions_m:,.0f} million token positions in all ({train_mb:.0f} MB of
training text), where the ALBERT paper trains for 125,000 steps of 4,096 x 512 (about 262 billion). Width
paid for itself: at H=384 it matched the narrower model's held-out accuracy after 5,100 steps, and the
second stage took it past, on fewer token positions in all than that model's 930 million. Fine-tuned on
Pang & Lee's sentences it is the first default model ahead of a TF-IDF + logistic regression baseline over
all 4,000 of them, if narrowly: 0.730 against 0.726 in 10-fold cross-validation, averaged over three
fine-tuning seeds, where the narrower one was at 0.719 (benchmarks/FINETUNE.md). More text and more steps
are what raise it further: the 2.26M examples here were seen about 2.7 times, with the same masks on every
pass.

It knows little of the world beyond its corpora (addresses, Wikipedia leads, novels, Shakespeare, the
King James Bible, movie reviews), and predicts lower-cased pieces. The training `mlm_accuracy` counts the 10% of
selected tokens that are left unchanged (trivially predictable), so it reads higher than the held-out
number.
"""


def _probe_table(rows: list[dict]) -> str:
    if not rows:
        return "not measured yet"
    head = "| layer | entropy / uniform | previous token: mean, best head | next token: mean, best head |"
    lines = [head, "|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['layer']} | {r['entropy_vs_uniform']:.2f} | {r['previous_mean']:.3f}, "
            f"{r['previous_best_head']:.3f} | {r['next_mean']:.3f}, {r['next_best_head']:.3f} |"
        )
    return "\n".join(lines)


def _position_note(cfg) -> str:
    if cfg.position_embedding_type == "absolute":
        return ""
    return " (Shaw et al., 2018: each head adds q . r(i - j), one learned vector per signed distance)"


def _fmt(row: dict) -> str:
    keep = (
        "step",
        "loss",
        "mlm_loss",
        "sop_loss",
        "mlm_accuracy",
        "sop_accuracy",
        "eval_loss",
        "eval_mlm_accuracy",
        "eval_sop_accuracy",
    )
    return (
        ", ".join(
            f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}" for k in keep if k in row
        )
        or "n/a"
    )


if __name__ == "__main__":
    main()
