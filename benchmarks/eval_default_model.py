"""Held-out masked-token top-1 accuracy of a masked-LM model (by default the embedded default model).

15% of the tokens of the whole held-out text are replaced by [MASK] (seeded) and predicted in
128-token windows. The held-out files are whole documents that the vocabulary and the pretraining
never saw (`openalbert fetch-corpus` writes them to CORPUS/heldout/).

    python benchmarks/eval_default_model.py --heldout work_data/corpora/heldout/*.txt \
        --output benchmarks/default_model_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import openalbert
from openalbert.pretraining.evaluate import masked_token_accuracy
from openalbert.tokenizer import AlbertTokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=openalbert.DEFAULT_MODEL)
    parser.add_argument("--heldout", nargs="+", required=True, help="held-out text files")
    parser.add_argument("--mask-prob", type=float, default=0.15)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, help="write the result as JSON here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = openalbert.AlbertForMaskedLM.from_pretrained(args.model)
    tokenizer = AlbertTokenizer.from_pretrained(args.model)
    start = time.perf_counter()
    result = masked_token_accuracy(
        model, tokenizer, args.heldout, mask_prob=args.mask_prob, seq_len=args.seq_len, seed=args.seed
    )
    result |= {
        "model": str(args.model),
        "heldout_files": [Path(f).name for f in args.heldout],
        "seconds": round(time.perf_counter() - start, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
