"""Where the int8 path loses fill-mask top-1 agreement with fp32 (issue #7's 99% line), measured on the
embedded default model and held-out real text.

Every variant of the default `AlbertForMaskedLM` predicts the masked positions of the same windows as the
fp32 model; agreement is the share of positions where its top-1 token is fp32's. Variants:
- `bf16`, the library's bf16 path, and `int8`, `quantize_int8` as shipped (int8 weights per output
  channel, uint8 activations per tensor, the encoder's GEMMs only);
- the same rounding simulated in fp32, to separate the sources of error: int8 weights alone, 8-bit
  activations alone (per tensor or per token), both, int8 on one GEMM of the shared layer at a time and,
  with --per-layer, int8 as shipped in one layer at a time.
It also reports the gap between fp32's top two logits at the masked positions: a guess whose gap is
below a path's logit error flips, so the share of near-ties bounds the agreement any path can reach.

    python benchmarks/int8_agreement.py --heldout work_data/corpora/heldout/*.txt \
        --output benchmarks/int8_agreement.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_speed import machine_info, masked_batches, text_windows
from torch import nn

import openalbert
from openalbert.checkpoint import resolve_path
from openalbert.fast.quantize import channel_scales, quantize_int8, weight_levels
from openalbert.linear import Linear, activate_and_add
from openalbert.modeling import AlbertLayer

M = openalbert.AlbertForMaskedLM
GEMMS = ("embedding_hidden_mapping_in", "query", "key", "value", "dense", "ffn", "ffn_output")


def int8_weight(weight: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 per output channel, as `Int8Linear` packs it (7 bits without VNNI), back in fp32."""
    scale, levels = channel_scales(weight)[:, None], weight_levels()
    return (weight / scale).round().clamp(-levels, levels) * scale


def uint8_activation(x: torch.Tensor, per: str) -> torch.Tensor:
    """Asymmetric uint8 over the whole tensor (what dynamic quantisation does) or per token, back in fp32."""
    dims = dict(dim=-1, keepdim=True) if per == "token" else {}
    lo, hi = x.amin(**dims).clamp(max=0), x.amax(**dims).clamp(min=0)
    scale = ((hi - lo) / 255).clamp_min(1e-12)
    zero = (-lo / scale).round()
    return ((x / scale + zero).round().clamp(0, 255) - zero) * scale


class LayerCounter:
    """Which layer of the encoder is running (0, 1, ... per AlbertLayer call: layers x inner_group_num; -1
    before the first, the E -> H map), for GEMMs rounded in some layers only: the shared layer is one module
    called once per layer."""

    def __init__(self, model: M) -> None:
        self.index = -1
        model.albert.encoder.register_forward_pre_hook(lambda *_: setattr(self, "index", -1))
        for layer in model.albert.encoder.modules():
            if isinstance(layer, AlbertLayer):
                layer.register_forward_pre_hook(lambda *_: setattr(self, "index", self.index + 1))


class SimulatedInt8(nn.Module):
    """A `Linear` whose weights and/or inputs are rounded as int8 would round them, computed in fp32; with
    `layers` (and their `counter`), only while one of those layers runs."""

    def __init__(
        self,
        linear: nn.Linear,
        weights: bool,
        activations: str | None,
        layers: set[int] | None = None,
        counter: LayerCounter | None = None,
    ) -> None:
        super().__init__()
        self.plain = linear.weight.detach()
        self.weight = int8_weight(self.plain) if weights else self.plain
        self.bias = linear.bias
        self.activations = activations
        self.layers, self.counter = layers, counter

    def forward(
        self, x: torch.Tensor, activation: str | None = None, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.layers is not None and self.counter.index not in self.layers:
            return activate_and_add(F.linear(x, self.plain, self.bias), activation, residual)
        x = x if self.activations is None else uint8_activation(x, self.activations)
        return activate_and_add(F.linear(x, self.weight, self.bias), activation, residual)


def simulated(
    model_dir: str,
    weights: bool,
    activations: str | None,
    only: tuple[str, ...] = GEMMS,
    layers: set[int] | None = None,
) -> M:
    """The model with the `only` GEMMs rounded as int8 would round them: in every layer, or in `layers`."""
    model = M.from_pretrained(model_dir).eval()
    counter = LayerCounter(model) if layers is not None else None
    for module in list(model.albert.encoder.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, Linear) and name in only:
                setattr(module, name, SimulatedInt8(child, weights, activations, layers, counter))
    return model


def variants(model_dir: str, layers: int = 0) -> dict[str, Callable[[], M]]:
    """Every variant by name; with `layers` (the model's layer count), int8 as shipped in one layer at a
    time as well."""
    out: dict[str, Callable[[], M]] = {
        "bf16": lambda: M.from_pretrained(model_dir, dtype=torch.bfloat16),
        "int8 (shipped)": lambda: quantize_int8(M.from_pretrained(model_dir)),
        "simulated: int8 weights only": lambda: simulated(model_dir, True, None),
        "simulated: 8-bit activations per tensor only": lambda: simulated(model_dir, False, "tensor"),
        "simulated: 8-bit activations per token only": lambda: simulated(model_dir, False, "token"),
        "simulated: int8 weights, activations per tensor": lambda: simulated(model_dir, True, "tensor"),
        "simulated: int8 weights, activations per token": lambda: simulated(model_dir, True, "token"),
    }
    for gemm in GEMMS:
        out[f"simulated: int8 on {gemm} only"] = lambda g=gemm: simulated(model_dir, True, "tensor", (g,))
    for layer in range(layers):
        out[f"simulated: int8 in layer {layer} only"] = lambda k=layer: simulated(
            model_dir, True, "tensor", GEMMS, {k}
        )
    return out


def masked_logits(model: nn.Module, batches: list) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(**b.tensors).logits[chosen].float() for b, chosen, _ in batches])


def one_mask_each(batches: list, mask_id: int, batch_size: int = 64) -> Iterator[dict[str, torch.Tensor]]:
    """The same masked positions, each masked alone in its window (the fill-mask pipeline's usual input);
    yields batches with `position` (B,), the masked column of each row."""
    rows = []
    for batch, chosen, targets in batches:
        ids = batch.tensors["input_ids"].clone()
        ids[chosen] = targets
        for row, col in chosen.nonzero().tolist():
            one = ids[row].clone()
            one[col] = mask_id
            rows.append((one, batch.tensors["attention_mask"][row], col))
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        ids = torch.stack([r[0] for r in chunk])
        yield {
            "input_ids": ids,
            "attention_mask": torch.stack([r[1] for r in chunk]),
            "token_type_ids": torch.zeros_like(ids),
            "position": torch.tensor([r[2] for r in chunk]),
        }


def one_mask_predictions(model: nn.Module, batches: list, mask_id: int) -> torch.Tensor:
    out = []
    with torch.inference_mode():
        for batch in one_mask_each(batches, mask_id):
            position = batch.pop("position")
            logits = model(**batch).logits
            out.append(logits[torch.arange(len(position)), position].float().argmax(-1))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=openalbert.DEFAULT_MODEL)
    parser.add_argument("--heldout", nargs="+", type=Path, required=True, help="held-out text files")
    parser.add_argument("--windows", type=int, default=200, help="128-token windows (200: ~3,800 masked)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-one-mask", action="store_true", help="skip the one-[MASK]-per-input check")
    parser.add_argument("--per-layer", action="store_true", help="also int8 in one layer at a time")
    parser.add_argument("--output", type=Path, help="write the result as JSON here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model_dir = str(resolve_path(args.model))
    tokenizer = openalbert.AlbertTokenizer.from_pretrained(model_dir)
    windows = text_windows(tokenizer, sorted(args.heldout), 128, args.windows)
    batches = masked_batches(tokenizer, windows, 0.15, args.seed)
    reference = M.from_pretrained(model_dir).eval()
    ref_logits = masked_logits(reference, batches)
    ref_top = ref_logits.argmax(-1)
    top2 = ref_logits.topk(2, dim=-1).values
    gap = top2[:, 0] - top2[:, 1]
    result = {
        "model": str(args.model),
        "heldout_files": [p.name for p in sorted(args.heldout)],
        "windows": len(windows),
        "masked_tokens": int(ref_top.numel()),
        "mask_prob": 0.15,
        "seed": args.seed,
        "fp32_top2_logit_gap": {
            "median": float(gap.median()),
            "share_below": {str(t): float((gap < t).float().mean()) for t in (0.01, 0.02, 0.05, 0.1)},
            "quantile_1pct": float(gap.quantile(0.01)),
        },
        "variants": {},
    }
    print(f"{result['masked_tokens']} masked tokens; fp32 top-2 logit gap {result['fp32_top2_logit_gap']}")
    config = reference.config
    layers = config.num_hidden_layers * config.inner_group_num if args.per_layer else 0
    for name, build in variants(model_dir, layers).items():
        logits = masked_logits(build(), batches)
        flips = logits.argmax(-1) != ref_top
        entry = {
            "agreement": float(1 - flips.float().mean()),
            "flips": int(flips.sum()),
            "mean_abs_logit_error": float((logits - ref_logits).abs().mean()),
            "median_gap_at_flips": float(gap[flips].median()) if flips.any() else None,
        }
        result["variants"][name] = entry
        print(
            f"  {name:50s} agreement {entry['agreement']:.4f} ({entry['flips']} flips), "
            f"mean |logit error| {entry['mean_abs_logit_error']:.4f}",
            flush=True,
        )
    if not args.no_one_mask:
        mask_id = tokenizer.mask_token_id
        ref_one = one_mask_predictions(reference, batches, mask_id)
        result["one_mask_per_input"] = {}
        for name in ("bf16", "int8 (shipped)"):
            agree = float(
                (one_mask_predictions(variants(model_dir)[name](), batches, mask_id) == ref_one)
                .float()
                .mean()
            )
            result["one_mask_per_input"][name] = agree
            print(f"  one [MASK] per input: {name:20s} agreement {agree:.4f}", flush=True)
    machine = machine_info()
    result["machine"] = {k: machine[k] for k in ("cpu", "core", "torch", "openalbert")}
    result["seconds"] = round(time.perf_counter() - start, 1)
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
