"""Optimizers and the learning-rate schedule for pretraining and fine-tuning.

LAMB follows You et al. 2019 ("Large Batch Optimization for Deep Learning", arXiv:1904.00962) as ALBERT
used it (google-research/albert `lamb_optimizer.py`): Adam moments without bias correction, decoupled
weight decay added to the update, and a layer-wise trust ratio ||w|| / ||update||. AdamW is torch's.
Two learning-rate schedules, each a resumable `LambdaLR`: "linear" (transformers' warm-up then decay to
zero over the steps after warm-up) and "polynomial" (the original ALBERT code's: warm-up, then
`(1 - step / total) ** power` counted from step 0, so the decay has already begun when warm-up ends).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

OPTIMIZERS = ("lamb", "adamw")
SCHEDULES = ("linear", "polynomial")

# Parameters of these modules are scales and shifts, not features: decaying them towards 0 only hurts.
NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
)


class Lamb(torch.optim.Optimizer):
    """LAMB as in ALBERT's pretraining: un-corrected Adam moments, decoupled decay, per-tensor trust ratio.

    Per parameter group: `lr`, `betas`, `eps`, `weight_decay` and `layer_adaptation` (apply the trust
    ratio; ALBERT turned it off for exactly the tensors it excluded from weight decay). With `capturable`
    (as torch's optimizers have it) the step count lives on the parameters' device and `lr` may be a 0-d
    tensor there, so that the step can be replayed from a CUDA graph (openalbert.fast.cuda_graph_train_step).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        layer_adaptation: bool = True,
        capturable: bool = False,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"Lamb: learning rate must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Lamb: betas must be in [0, 1), got {betas}")
        if eps <= 0.0:
            raise ValueError(f"Lamb: eps must be > 0, got {eps}")
        if weight_decay < 0.0:
            raise ValueError(f"Lamb: weight_decay must be >= 0, got {weight_decay}")
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            layer_adaptation=layer_adaptation,
            capturable=capturable,
        )
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("capturable", False)  # optimizer states saved before the option

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's Optimizer.step signature
        """Apply one LAMB update to every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            weight_decay, adapt = group["weight_decay"], group["layer_adaptation"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("Lamb does not support sparse gradients")
                state = self.state[p]
                if not state:
                    device = p.device if group["capturable"] else "cpu"
                    state["step"] = torch.zeros((), dtype=torch.float32, device=device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                # No bias correction: ALBERT's LAMB divides the raw moments.
                update = m / (v.sqrt() + eps)
                if weight_decay:
                    update.add_(p, alpha=weight_decay)
                if adapt:
                    w_norm = torch.linalg.vector_norm(p)
                    u_norm = torch.linalg.vector_norm(update)
                    # torch.where keeps this on the device: no host sync per parameter.
                    ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                    update = update * ratio
                if torch.is_tensor(lr):
                    p.sub_(update * lr)
                else:
                    p.add_(update, alpha=-lr)
        return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split `model`'s trainable parameters into a decayed group and a no-decay group.

    No decay for every parameter of a normalisation module (by type: LayerNorm, RMSNorm, ...) and for
    every parameter registered under the name `bias`. Tied parameters appear once. Each group says which
    it is (`decays`), whatever the rate.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        is_norm = isinstance(module, NO_DECAY_MODULES)
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if is_norm or name == "bias" else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "decays": True},
        {"params": no_decay, "weight_decay": 0.0, "decays": False},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    model: nn.Module,
    name: str = "lamb",
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
) -> torch.optim.Optimizer:
    """LAMB or AdamW over `param_groups(model, weight_decay)`; AdamW uses torch's fused kernel when it can."""
    groups = param_groups(model, weight_decay)
    if name == "lamb":
        for g in groups:
            # As ALBERT: tensors excluded from decay (LayerNorm, biases) also skip the trust ratio, by what
            # they are, whatever the rate (weight_decay=0 kept it for the others in the original, too).
            g["layer_adaptation"] = g["decays"]
        return Lamb(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if name == "adamw":
        params = [p for g in groups for p in g["params"]]
        fused = bool(params) and all(
            p.is_floating_point() and p.device.type in ("cpu", "cuda") and type(p) is nn.Parameter
            for p in params
        )
        try:
            return torch.optim.AdamW(
                groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused
            )
        except (RuntimeError, ValueError):
            # Fused kernels reject some dtype/device mixes; the foreach implementation takes everything.
            return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


def _check_steps(warmup_steps: int, total_steps: int) -> None:
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")


def linear_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Linear warm-up to the peak learning rate over `warmup_steps`, then linear decay to 0 at `total_steps`.

    Optimizer step `s` (0-based) uses `lr * (s + 1) / warmup_steps` during warm-up, so no step is wasted
    at lr 0, then `lr * (total_steps - s) / (total_steps - warmup_steps)`.
    """
    _check_steps(warmup_steps, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return LambdaLR(optimizer, factor)


def polynomial_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, power: float = 1.0
) -> LambdaLR:
    """The original ALBERT schedule (google-research/albert `create_optimizer`, `poly_power`).

    Optimizer step `s` (0-based, the original's global step) uses `lr * s / warmup_steps` during
    warm-up (the first step at rate 0, as there), then `lr * (1 - s / total_steps) ** power`.
    """
    _check_steps(warmup_steps, total_steps)
    if power <= 0:
        raise ValueError(f"power must be > 0, got {power}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / warmup_steps
        return max(0.0, 1.0 - min(step, total_steps) / total_steps) ** power

    return LambdaLR(optimizer, factor)


def build_schedule(
    optimizer: torch.optim.Optimizer, name: str, warmup_steps: int, total_steps: int, power: float = 1.0
) -> LambdaLR:
    """The schedule called `name` (one of SCHEDULES); `power` is the polynomial schedule's."""
    if name == "linear":
        return linear_schedule(optimizer, warmup_steps, total_steps)
    if name == "polynomial":
        return polynomial_schedule(optimizer, warmup_steps, total_steps, power)
    raise ValueError(f"unknown learning-rate schedule {name!r}; choose one of {SCHEDULES}")
