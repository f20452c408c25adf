"""LAMB against a hand-computed reference, the decay/no-decay split, and the warm-up/decay schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from openalbert.training.optim import (
    Lamb,
    build_optimizer,
    build_schedule,
    linear_schedule,
    param_groups,
    polynomial_schedule,
)


def _lamb_reference(w, grads, lr, wd, adapt, beta1=0.9, beta2=0.999, eps=1e-6):
    """ALBERT's lamb_optimizer.py written out in numpy (float64), one step per gradient."""
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for g in grads:
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        update = m / (np.sqrt(v) + eps)  # no bias correction
        update = update + wd * w
        ratio = 1.0
        if adapt:
            w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(update)
            ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
        w = w - ratio * lr * update
    return w


def _run_lamb(w0, grads, **kwargs):
    p = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = Lamb([p], **kwargs)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return p.detach().numpy()


def test_lamb_one_step_by_hand():
    # w = [3, 4] (norm 5), g = [1, -2]: m = 0.1 g, v = 0.001 g^2, so the Adam part is
    # 0.1 g / (sqrt(0.001) |g| + eps) = sign(g) * 0.1 / (0.0316228 + 1e-6 / |g|).
    w, g, lr, wd = np.array([3.0, 4.0]), np.array([1.0, -2.0]), 0.01, 0.01
    adam = 0.1 * g / (np.sqrt(0.001) * np.abs(g) + 1e-6)
    update = adam + wd * w
    expected = w - lr * (5.0 / np.linalg.norm(update)) * update
    got = _run_lamb(w, [g], lr=lr, weight_decay=wd)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # The step's length is lr * ||w||: the trust ratio makes the update size relative to the weights.
    np.testing.assert_allclose(np.linalg.norm(got - w), lr * 5.0, rtol=1e-12)


def test_lamb_matches_reference_over_several_steps():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(4, 3))
    grads = [rng.normal(size=(4, 3)) for _ in range(5)]
    for wd, adapt in ((0.01, True), (0.0, False), (0.1, True)):
        got = _run_lamb(w0, grads, lr=0.05, weight_decay=wd, layer_adaptation=adapt)
        np.testing.assert_allclose(got, _lamb_reference(w0, grads, 0.05, wd, adapt), rtol=1e-10, atol=1e-12)


def test_capturable_lamb_reads_a_learning_rate_tensor_and_keeps_its_state():
    # CUDA graphs (openalbert.fast.cuda_graph_train_step) read the rate from a tensor, which schedules fill.
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(4, 3))
    grads = [rng.normal(size=(4, 3)) for _ in range(4)]
    lr = torch.tensor(0.05, dtype=torch.float64)
    got = _run_lamb(w0, grads, lr=0.05, capturable=True)  # a number still works
    np.testing.assert_allclose(got, _lamb_reference(w0, grads, 0.05, 0.01, True), rtol=1e-10, atol=1e-12)
    p = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = Lamb([p], capturable=True)
    opt.param_groups[0]["lr"] = lr
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    np.testing.assert_allclose(p.detach().numpy(), got, rtol=1e-12, atol=1e-14)
    assert float(opt.state[p]["step"]) == 4 and opt.state[p]["step"].device == p.device
    # A state saved before the option loads, and steps as before.
    state = opt.state_dict()
    for group in state["param_groups"]:
        del group["capturable"]
        group["lr"] = 0.05
    again = Lamb([p])
    again.load_state_dict(state)
    assert again.param_groups[0]["capturable"] is False
    again.step()


def test_lamb_trust_ratio_is_one_for_zero_weights():
    g = np.array([0.5, -1.0, 2.0])
    got = _run_lamb(np.zeros(3), [g], lr=0.1, weight_decay=0.01)
    adam = 0.1 * g / (np.sqrt(0.001) * np.abs(g) + 1e-6)
    np.testing.assert_allclose(got, -0.1 * adam, rtol=1e-12)


def test_lamb_rejects_bad_hyper_parameters():
    p = [nn.Parameter(torch.zeros(2))]
    for kwargs in ({"lr": -1.0}, {"betas": (1.0, 0.9)}, {"eps": 0.0}, {"weight_decay": -0.1}):
        with pytest.raises(ValueError):
            Lamb(p, **kwargs)


def _tiny_albert():
    from openalbert import AlbertConfig, AlbertForPreTraining

    config = AlbertConfig(
        vocab_size=50, embedding_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16,
    )  # fmt: skip
    return AlbertForPreTraining(config)


def test_param_groups_split_by_module_type_and_bias():
    model = _tiny_albert()
    decay, no_decay = param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}  # tied tensors are listed once here too
    decay_names = {names[id(p)] for p in decay["params"]}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert not decay_names & no_decay_names
    assert decay_names | no_decay_names == set(names.values())
    # ALBERT's own exclusion list, by name: ["LayerNorm", "layer_norm", "bias"].
    for name in no_decay_names:
        assert name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name, name
    for name in decay_names:
        assert name.endswith("weight") and "LayerNorm" not in name and "layer_norm" not in name, name
    assert "albert.embeddings.word_embeddings.weight" in decay_names
    # The MLM decoder shares the embedding matrix and the output bias: neither appears twice.
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_build_optimizer():
    model = _tiny_albert()
    lamb = build_optimizer(model, "lamb", lr=1e-3)
    assert isinstance(lamb, Lamb)
    assert [g["layer_adaptation"] for g in lamb.param_groups] == [True, False]
    # The trust ratio follows what a tensor is, not the rate: with weight_decay=0 the weights keep it, as in
    # ALBERT's optimizer (it was off for every tensor, which made LAMB Adam)
    no_decay = build_optimizer(model, "lamb", lr=1e-3, weight_decay=0.0)
    assert [g["layer_adaptation"] for g in no_decay.param_groups] == [True, False]
    adamw = build_optimizer(model, "adamw", lr=1e-4)
    assert isinstance(adamw, torch.optim.AdamW)
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.01, 0.0]
    assert adamw.defaults["eps"] == 1e-6
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(model, "sgd")


def test_linear_schedule_values_and_resume():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = linear_schedule(opt, warmup_steps=4, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(lrs, [0.25, 0.5, 0.75, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    assert opt.param_groups[0]["lr"] == 0.0

    # A schedule restored from a state dict continues with the same values.
    opt2 = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = linear_schedule(opt2, warmup_steps=4, total_steps=10)
    opt_a = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched_a = linear_schedule(opt_a, warmup_steps=4, total_steps=10)
    for _ in range(6):
        opt_a.step()
        sched_a.step()
    opt2.load_state_dict(opt_a.state_dict())
    sched2.load_state_dict(sched_a.state_dict())
    assert opt2.param_groups[0]["lr"] == pytest.approx(lrs[6])
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(lrs[7])


def test_linear_schedule_without_warmup_and_errors():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    linear_schedule(opt, 0, 4)
    assert opt.param_groups[0]["lr"] == 2.0
    with pytest.raises(ValueError, match="warmup_steps"):
        linear_schedule(opt, 5, 4)
    with pytest.raises(ValueError, match="total_steps"):
        linear_schedule(opt, 0, 0)


def _albert_rate(step: int, peak: float, warmup: int, total: int, power: float) -> float:
    """google-research/albert create_optimizer: tf polynomial_decay (end 0, no cycle) then the warm-up blend."""
    decayed = (peak - 0.0) * (1 - min(step, total) / total) ** power
    return peak * step / warmup if step < warmup else decayed


@pytest.mark.parametrize("power", [1.0, 0.5, 2.0])
def test_polynomial_schedule_is_the_original_albert_one(power):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.76e-3)
    sched = build_schedule(opt, "polynomial", warmup_steps=3, total_steps=12, power=power)
    lrs = []
    for _ in range(13):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [_albert_rate(s, 1.76e-3, 3, 12, power) for s in range(13)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12, atol=0)
    assert lrs[0] == 0.0 and lrs[3] == pytest.approx(1.76e-3 * 0.75**power) and lrs[12] == 0.0
    # Unlike the linear schedule, the decay is counted from step 0: warm-up ends below the peak.
    linear = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.76e-3)
    linear_sched = build_schedule(linear, "linear", 3, 12)
    for _ in range(3):
        linear.step()
        linear_sched.step()
    assert linear.param_groups[0]["lr"] == pytest.approx(1.76e-3)


def test_schedule_errors():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'cosine'"):
        build_schedule(opt, "cosine", 0, 4)
    with pytest.raises(ValueError, match="power must be > 0"):
        polynomial_schedule(opt, 0, 4, power=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        polynomial_schedule(opt, 5, 4)
