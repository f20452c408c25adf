"""What openalbert's AVX2 kernels give on a CPU with AVX2 and FMA but no AVX-512, against the paths they
replaced there, alternating in one process. --kernel picks which:

- "linear" (default): the GEMM kernel (`cpu_kernels.linear`, `csrc/avx2/fp32.c`) against oneDNN's packed
  weights up to 96 token rows and PyTorch's GEMMs above;
- "attention": the attention kernel (`packed_attention`, `csrc/avx2/attention.c`) against PyTorch's
  attention (its fused kernel, after grouping the sequences by length on the variable-length workload).

What is timed:
- "forward": a whole fp32 AlbertModel forward (random weights of --preset, or of the config in a model
  directory such as the embedded default model's, inference mode) per workload: 1 x 16, 1 x 128, 1 x 512
  and 8 x 128 tokens, and 64 log-normal lengths (median 50, 8..128) padded to 128;
- "gemm" (linear only): one linear layer alone at the shapes of the model's shared layer, the kernel
  against `F.linear` (MKL), in GFLOP/s.
Each row is the median of --rounds rounds; the order alternates every round. Both outputs are compared
(`max_abs_diff`).

    python benchmarks/bench_linear_kernel.py --output benchmarks/linear_kernel_avx2.json
    python benchmarks/bench_linear_kernel.py --kernel attention --preset src/openalbert/default_model \
        --output benchmarks/attention_kernel_avx2_default.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import openalbert
from openalbert import cpu_kernels, packed_attention


def config_for(preset: str) -> openalbert.AlbertConfig:
    """A preset's architecture, or that of the model directory `preset` names."""
    if Path(preset).is_dir():
        return openalbert.AlbertConfig.from_pretrained(preset)
    return openalbert.AlbertConfig.from_preset(preset)


def workloads(vocab_size: int) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """name -> (input ids, attention mask or None)."""
    gen = torch.Generator().manual_seed(0)
    ids = lambda b, t: torch.randint(5, vocab_size, (b, t), generator=gen)  # noqa: E731
    lengths = np.clip(np.random.default_rng(0).lognormal(np.log(50), 0.6, 64).astype(int), 8, 128)
    mask = (torch.arange(128) < torch.as_tensor(lengths)[:, None]).long()
    return {
        "b1x16": (ids(1, 16), None),
        "b1x128": (ids(1, 128), None),
        "b1x512": (ids(1, 512), None),
        "b8x128": (ids(8, 128), None),
        "var64": (ids(64, 128), mask),
    }


def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def compare(run: Callable[[bool], Callable[[], torch.Tensor]], rounds: int) -> dict[str, float]:
    """Median seconds with the kernel and without it, alternating, and their outputs' max abs difference."""
    times: dict[bool, list[float]] = {True: [], False: []}
    outs = {}
    for r in range(rounds + 1):  # round 0 warms up (and packs the weights)
        for kernel in (True, False) if r % 2 else (False, True):
            seconds, outs[kernel] = timed(run(kernel))
            if r:
                times[kernel].append(seconds)
    with_kernel, without = statistics.median(times[True]), statistics.median(times[False])
    return {
        "kernel_s": with_kernel,
        "without_s": without,
        "speedup": without / with_kernel,
        "max_abs_diff": float((outs[True] - outs[False]).abs().max()),
    }


# kernel -> (the module whose `available` the model asks on every call, that function as it is)
_SWITCHES = {
    "linear": (cpu_kernels, "linear_available"),  # modeling repacks the weights when the answer changes
    "attention": (packed_attention, "available"),
}
_REAL = {kernel: getattr(module, name) for kernel, (module, name) in _SWITCHES.items()}


def kernel_switch(on: bool, kernel: str = "linear") -> None:
    """The model uses the kernel (as built here), or the path it replaced."""
    module, name = _SWITCHES[kernel]
    setattr(module, name, _REAL[kernel] if on else (lambda: False))


def bench_forward(
    config: openalbert.AlbertConfig, rounds: int, kernel: str = "linear"
) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    model = openalbert.AlbertModel(config).eval()
    results = {}
    try:
        with torch.inference_mode():
            for name, (ids, mask) in workloads(config.vocab_size).items():

                def run(on: bool, ids: torch.Tensor = ids, mask: torch.Tensor | None = mask):
                    kernel_switch(on, kernel)
                    return lambda: model(ids, attention_mask=mask).last_hidden_state

                results[name] = compare(run, rounds)
                r = results[name]
                print(f"forward {name}: x{r['speedup']:.2f} ({r['kernel_s'] * 1e3:.1f} ms against "
                      f"{r['without_s'] * 1e3:.1f})", flush=True)  # fmt: skip
    finally:
        kernel_switch(True, kernel)
    return results


def bench_gemm(config: openalbert.AlbertConfig, rows: list[int], rounds: int) -> dict[str, dict[str, float]]:
    h, i = config.hidden_size, config.intermediate_size
    results = {}
    for m in rows:
        for k, n in ((h, 3 * h), (h, h), (h, i), (i, h)):
            gen = torch.Generator().manual_seed(m + k + n)
            x, w, b = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen), torch.randn(n)
            packed = cpu_kernels.pack_linear(w)

            def run(on: bool, x=x, w=w, b=b, packed=packed) -> Callable[[], torch.Tensor]:
                return (lambda: cpu_kernels.linear(x, packed, b)) if on else (lambda: F.linear(x, w, b))

            result = compare(run, rounds)
            flops = 2 * m * k * n / 1e9
            result |= {"kernel_gflops": flops / result["kernel_s"], "mkl_gflops": flops / result["without_s"]}
            results[f"{m}x{k}x{n}"] = result
            print(
                f"gemm {m}x{k}x{n}: {result['kernel_gflops']:.0f} GFLOP/s against {result['mkl_gflops']:.0f}"
            )
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernel", choices=sorted(_SWITCHES), default="linear")
    parser.add_argument(
        "--preset", default="albert-base-v2", help="a name of openalbert.PRESETS, or a model directory"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gemm-rows", type=int, nargs="*", default=[128, 1024, 3770])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    if not cpu_kernels.linear_available():  # the AVX2 library (it carries both kernels) runs here
        parser.error(f"the AVX2 kernels do not run here: {cpu_kernels.linear_status()}")
    torch.set_num_threads(args.threads)
    config = config_for(args.preset)
    result = {
        "kernel_compared": args.kernel,
        "preset": args.preset,
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "kernel": cpu_kernels.linear_status(),
        "forward": bench_forward(config, args.rounds, args.kernel),
    }
    if args.kernel == "linear":
        result["gemm"] = bench_gemm(config, args.gemm_rows, args.rounds)
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
