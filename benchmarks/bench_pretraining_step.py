"""What `PretrainingObjective`'s sparse last layer saves: its training step against the same step with the
last layer run at every position, and against the model's own forward with labels, alternating in one
process.

Three ways to compute the same loss and gradients of one MLM (+ SOP) step, bf16 autocast on the CPU
(or whatever --device and --no-autocast say), AdamW, random weights of the chosen architecture:
- "objective": `PretrainingObjective`, the last layer only at [CLS] and the masked positions
  (`AlbertModel(queries_at=...)`), the vocabulary projection only at the masked ones;
- "full last layer": the same with the last layer at every position (the objective before session 10);
- "model forward": the model's own `forward(labels=...)` (full logits, as transformers returns them).
The order rotates every round; each row is the median ms per step of --steps rounds after --warmup. The
three losses of the untrained model (in eval mode: no dropout) are recorded too (`max_loss_diff`): they
are one loss.

    python benchmarks/bench_pretraining_step.py --preset default --batch 16      # the embedded model's shape
    python benchmarks/bench_pretraining_step.py --preset albert-base-v2 --mlm-only --batch 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import openalbert
from openalbert.pretraining.run import PretrainingObjective

DEFAULT_MODEL = Path(openalbert.__file__).parent / "default_model"


def config_for(preset: str) -> openalbert.AlbertConfig:
    """`default`: the embedded default model's architecture; otherwise a name of openalbert.PRESETS."""
    if preset == "default":
        return openalbert.AlbertConfig.from_pretrained(DEFAULT_MODEL)
    return openalbert.AlbertConfig.from_preset(preset)


def make_batch(config: openalbert.AlbertConfig, batch: int, seq_len: int, sop: bool, seed: int) -> dict:
    """Random ids with 15% of positions masked and labelled (the rest -100), two segments, no padding."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, config.vocab_size, (batch, seq_len), generator=gen)
    masked = torch.rand(batch, seq_len, generator=gen) < 0.15
    out = {
        "input_ids": ids.masked_fill(masked, 4),
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": (torch.arange(seq_len) >= seq_len // 2).long().expand(batch, -1).contiguous(),
        "labels": torch.where(masked, ids, -100),
    }
    if sop:
        out["sentence_order_label"] = torch.randint(0, 2, (batch,), generator=gen)
    return out


def full_last_layer_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """The objective's loss with the last layer at every position, then the masked rows picked."""
    mask = batch["labels"] != -100
    out = model.albert(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        token_type_ids=batch["token_type_ids"],
    )
    loss = F.cross_entropy(model.predictions(out.last_hidden_state[mask]), batch["labels"][mask])
    if "sentence_order_label" in batch:
        loss = loss + F.cross_entropy(model.sop_classifier(out.pooler_output), batch["sentence_order_label"])
    return loss


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = config_for(args.preset)
    head = openalbert.AlbertForMaskedLM if args.mlm_only else openalbert.AlbertForPreTraining
    device = torch.device(args.device)
    model = head(config).to(device).train()
    objective = PretrainingObjective(model)
    batch = {
        k: v.to(device)
        for k, v in make_batch(config, args.batch, args.seq_len, not args.mlm_only, args.seed).items()
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    losses: dict[str, Callable[[], torch.Tensor]] = {
        "objective": lambda: objective(**batch).loss,
        "full last layer": lambda: full_last_layer_loss(model, batch),
        "model forward": lambda: model(**batch).loss,
    }

    def step(name: str) -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=not args.no_autocast):
            loss = losses[name]()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    names = list(losses)
    # The same loss three ways, before any step; in eval mode, where no dropout (the SOP head has some) differs.
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=not args.no_autocast):
        first = {name: float(losses[name]()) for name in names}
    model.train()
    for _ in range(args.warmup):
        for name in names:
            step(name)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.steps):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step(name)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name].append(time.perf_counter() - start)
    ms = {name: statistics.median(s) * 1e3 for name, s in seconds.items()}
    return {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        | {"torch": torch.__version__},
        "config": {k: getattr(config, k) for k in ("hidden_size", "num_hidden_layers", "intermediate_size")},
        "loss_before_training": first,
        "max_loss_diff": max(first.values()) - min(first.values()),
        "median_ms": ms,
        "all_ms": {name: [round(x * 1e3, 1) for x in s] for name, s in seconds.items()},
        "objective_vs_full_last_layer": ms["full last layer"] / ms["objective"],
        "objective_vs_model_forward": ms["model forward"] / ms["objective"],
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default", help="'default' (the embedded model's shape) or a preset")
    p.add_argument("--mlm-only", action="store_true", help="AlbertForMaskedLM, no SOP")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=8, help="timed rounds (each runs every variant once)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-autocast", action="store_true", help="fp32 instead of bf16 autocast")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, help="write the result as JSON here")
    args = p.parse_args(argv)
    result = run(args)
    for name, ms in result["median_ms"].items():
        print(
            f"{name:16s} {ms:9.1f} ms/step  (x{result['median_ms'][name] / result['median_ms']['objective']:.3f} the objective's time)"
        )
    if args.output:
        args.output.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
