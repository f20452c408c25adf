"""Switch a pretraining checkpoint from absolute to relative position scores (Shaw et al., 2018).

The default model's first 7,380 steps, with ALBERT's absolute position embeddings, stayed in the
bag-of-words phase of MLM training: no head attended to neighbouring tokens. With relative positions a
head can learn "look one token left" from one distance vector and its query bias, and the model left
that phase within 200 steps. This keeps every trained weight, drops the use of the absolute position
table (transformers keeps it in the state dict, unused) and adds the distance table, initialised as a
fresh model would (seeded).

    python scripts/default_model/relative_positions.py work_data/run6/checkpoints/step-00000300 \
        work_data/exp/rel_init
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from openalbert import AlbertConfig, AlbertForPreTraining


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a model directory (a pretraining checkpoint)")
    parser.add_argument("output", type=Path)
    parser.add_argument("--type", default="relative_key", choices=["relative_key", "relative_key_query"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    trained = AlbertForPreTraining.from_pretrained(args.source)
    config = AlbertConfig.from_pretrained(args.source)
    config.position_embedding_type = args.type
    torch.manual_seed(args.seed)
    model = AlbertForPreTraining(config)
    missing, unexpected = model.load_state_dict(trained.state_dict(), strict=False)
    new = [name for name in missing if not name.endswith("distance_embedding.weight")]
    if new or unexpected:
        raise SystemExit(f"unexpected weights: missing {new}, unexpected {unexpected}")
    model.save_pretrained(args.output)
    print(f"{args.source} -> {args.output} ({args.type}, new: {', '.join(missing)})")


if __name__ == "__main__":
    main()
