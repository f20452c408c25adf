"""Has a masked-LM checkpoint left the bag-of-words phase? Per-layer attention statistics on held-out text.

Early in MLM training a model predicts from the bag of words in view: every head attends almost
uniformly, and no head looks at the neighbouring tokens. Leaving that phase shows as heads whose
attention to the previous or next token is far above chance (1 / real tokens) and whose entropy
falls below uniform attention's. Prints one row per layer and writes JSON with --output.

    python scripts/default_model/attention_probe.py --model work_data/run6/checkpoints/step-00000300 \
        --heldout work_data/corpora/heldout/*.txt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from openalbert import AlbertForMaskedLM
from openalbert.pretraining.evaluate import masked_windows, token_windows
from openalbert.tokenizer import AlbertTokenizer


@torch.no_grad()
def probe(model_dir: str | Path, files: list[str], windows: int = 64, seq_len: int = 128) -> list[dict]:
    """Per layer: mean attention entropy / uniform entropy, and the mean and best-head share of attention
    on the previous and on the next token, next to chance (the mean of 1 / real tokens)."""
    model = AlbertForMaskedLM.from_pretrained(model_dir).eval()
    tokenizer = AlbertTokenizer.from_pretrained(model_dir)
    full = [w for w in token_windows(tokenizer, files, seq_len) if len(w) == seq_len - 2]  # no padding
    ids, attention, _, _ = next(
        masked_windows(tokenizer, full[:windows], mask_prob=0.15, seed=0, batch_size=windows)
    )
    out = model(input_ids=ids, attention_mask=attention, output_attentions=True)
    T = ids.shape[1]
    rows = []
    for layer, probs in enumerate(out.attentions):  # (B, nh, T, T), padding-free windows
        probs = probs.float()
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean((0, 2))  # (nh,)
        previous = probs.diagonal(offset=-1, dim1=-2, dim2=-1).mean((0, 2))  # query i -> key i-1
        following = probs.diagonal(offset=1, dim1=-2, dim2=-1).mean((0, 2))
        rows.append(
            {
                "layer": layer,
                "entropy_vs_uniform": round(float(entropy.mean() / torch.log(torch.tensor(float(T)))), 3),
                "previous_mean": round(float(previous.mean()), 4),
                "previous_best_head": round(float(previous.max()), 4),
                "next_mean": round(float(following.mean()), 4),
                "next_best_head": round(float(following.max()), 4),
                "chance": round(1 / T, 4),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--heldout", nargs="+", required=True)
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = probe(args.model, args.heldout, args.windows)
    for row in rows:
        print(" ".join(f"{k}={v}" for k, v in row.items()))
    if args.output:
        args.output.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
