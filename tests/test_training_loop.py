"""The shared training loop: data order, exact resume after a signal, accumulation, DDP = 1 process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from openalbert import AlbertConfig, AlbertForMaskedLM, AlbertForPreTraining, modeling
from openalbert.pretraining.run import PretrainingObjective
from openalbert.training import ResumableSampler, TrainConfig, latest_checkpoint, list_checkpoints, train
from openalbert.training.loop import TrainingDiverged

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


class SyntheticPretraining(torch.utils.data.Dataset):
    """AlbertForPreTraining inputs with exactly `k` predicted tokens per example.

    Equal counts make a mean over a big batch equal the mean of the means over its parts, which is
    what DDP and gradient accumulation compute.
    """

    def __init__(self, n: int = 64, seq: int = 32, vocab: int = 100, k: int = 4, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, vocab, (n, seq), generator=g)
        self.positions = torch.stack([torch.randperm(seq - 2, generator=g)[:k] + 1 for _ in range(n)])
        self.sop = torch.randint(0, 2, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids, pos = self.ids[i].clone(), self.positions[i]
        labels = torch.full_like(ids, -100)
        labels[pos] = ids[pos]
        ids[pos] = 4  # [MASK]
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "token_type_ids": (torch.arange(len(ids)) >= len(ids) // 2).long(),
            "labels": labels,
            "sentence_order_label": self.sop[i],
        }


def tiny_objective(dropout: float = 0.0, seed: int = 0, positions: str = "absolute") -> PretrainingObjective:
    config = AlbertConfig(
        vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout, classifier_dropout_prob=dropout, position_embedding_type=positions,
    )  # fmt: skip
    torch.manual_seed(seed)
    return PretrainingObjective(AlbertForPreTraining(config))


def run_config(out: Path, **overrides) -> TrainConfig:
    base = dict(output_dir=out, max_steps=6, batch_size=8, learning_rate=3e-3, warmup_steps=2, device="cpu",
                progress=False, plot=False)  # fmt: skip
    return TrainConfig(**{**base, **overrides})


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model.safetensors"))


# ---- data order --------------------------------------------------------------------------------------------


def test_sampler_epochs_are_permutations_and_deterministic():
    s = ResumableSampler(10, batch_size=3, seed=7)
    assert s.batches_per_epoch == 3
    epoch0 = [s.next_batch() for _ in range(3)]
    epoch1 = [s.next_batch() for _ in range(3)]
    assert s.epoch == 1
    assert len({i for b in epoch0 for i in b}) == 9 and epoch0 != epoch1
    again = ResumableSampler(10, batch_size=3, seed=7)
    assert [again.next_batch() for _ in range(6)] == epoch0 + epoch1


def test_sampler_resumes_mid_epoch():
    a = ResumableSampler(50, batch_size=4, seed=1)
    for _ in range(17):  # past the first epoch (12 batches)
        a.next_batch()
    b = ResumableSampler(50, batch_size=4, seed=1)
    b.load_state_dict(a.state_dict())
    assert [b.next_batch() for _ in range(20)] == [a.next_batch() for _ in range(20)]
    with pytest.raises(ValueError, match="51"):
        ResumableSampler(51, batch_size=4).load_state_dict(a.state_dict())


def test_sampler_ranks_split_the_single_process_global_batch():
    single = ResumableSampler(40, batch_size=6, seed=3)
    ranks = [ResumableSampler(40, batch_size=3, seed=3, rank=r, world_size=2) for r in range(2)]
    assert single.batches_per_epoch == ranks[0].batches_per_epoch == 6
    for _ in range(12):
        assert sorted(single.next_batch()) == sorted(ranks[0].next_batch() + ranks[1].next_batch())


def test_sampler_rejects_a_dataset_smaller_than_a_batch():
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ResumableSampler(5, batch_size=4, world_size=2)


# ---- the objective ------------------------------------------------------------------------------------------


def test_objective_equals_the_model_loss_and_counts_accuracy():
    objective = tiny_objective().eval()
    data = SyntheticPretraining(n=6)
    batch = {k: torch.stack([data[i][k] for i in range(6)]) for k in data[0]}
    with torch.no_grad():
        out = objective(**batch)
        ref = objective.model(**batch)
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-6, atol=1e-6)
    mask = batch["labels"] != -100
    correct = (ref.prediction_logits.argmax(-1)[mask] == batch["labels"][mask]).sum()
    num, den = out.metrics["mlm_accuracy"]
    assert int(num) == int(correct) and int(den) == int(mask.sum()) == 24
    sop_num, sop_den = out.metrics["sop_accuracy"]
    assert int(sop_num) == int((ref.sop_logits.argmax(-1) == batch["sentence_order_label"]).sum())
    assert int(sop_den) == 6


@pytest.mark.parametrize("max_predictions", [None, 4, 9])
@pytest.mark.parametrize("head", ["pretraining", "masked-lm"])
@pytest.mark.parametrize("positions", ["absolute", "relative_key"])
def test_objective_gradients_equal_the_model_loss_gradients(positions, head, max_predictions):
    # The objective runs the last layer at [CLS] and the masked positions only (queries_at); the model's
    # loss runs it everywhere. Padded rows (unpadded on the CPU) and a row with no masked token included.
    # With max_predictions (4 masked tokens a row here) at a fixed number of positions, for CUDA graphs.
    objective = tiny_objective(positions=positions).train()
    data = SyntheticPretraining(n=6)
    batch = {k: torch.stack([data[i][k] for i in range(6)]) for k in data[0]}
    if head == "masked-lm":  # MLM only: no SOP head, no sentence_order_label
        torch.manual_seed(0)
        objective = PretrainingObjective(AlbertForMaskedLM(objective.model.config)).train()
        del batch["sentence_order_label"]
    objective.max_predictions = max_predictions
    batch["attention_mask"][1, 12:] = 0
    batch["attention_mask"][4, 9:] = 0
    batch["labels"][1, 12:] = -100
    batch["labels"][4] = -100

    def grads(loss: torch.Tensor) -> dict[str, torch.Tensor]:
        objective.zero_grad()
        loss.backward()
        return {k: p.grad.clone() for k, p in objective.model.named_parameters() if p.grad is not None}

    out = objective(**batch)
    ours = grads(out.loss)
    ref = grads(objective.model(**batch).loss)
    assert ours.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(ours[k], ref[k], rtol=1e-4, atol=1e-6, msg=k)
    objective.max_predictions = None
    for name, (num, den) in objective(**batch).metrics.items():  # the same sums and counts
        torch.testing.assert_close(out.metrics[name][0], num, rtol=1e-5, atol=1e-5, msg=name)
        assert int(out.metrics[name][1]) == int(den), name


def test_objective_refuses_more_masked_tokens_than_max_predictions():
    objective = tiny_objective()
    data = SyntheticPretraining(n=2)  # 4 masked tokens a row
    batch = {k: torch.stack([data[i][k] for i in range(2)]) for k in data[0]}
    objective.max_predictions = 3
    with pytest.raises(ValueError, match="4 masked tokens, more than max_predictions \\(3\\)"):
        objective(**batch)
    with pytest.raises(ValueError, match="max_predictions must be >= 1"):
        PretrainingObjective(objective.model, max_predictions=0)


def test_objective_refuses_sop_labels_for_a_model_without_the_head():
    objective = PretrainingObjective(AlbertForMaskedLM(tiny_objective().model.config))
    data = SyntheticPretraining(n=2)
    batch = {k: torch.stack([data[i][k] for i in range(2)]) for k in data[0]}
    with pytest.raises(ValueError, match="no sentence-order head"):
        objective(**batch)


@pytest.mark.parametrize("positions", ["absolute", "relative_key"])
def test_objective_on_the_gpus_attention_path(monkeypatch, positions):
    # On a GPU, attention with autograd runs in PyTorch's fused kernel, under bf16 autocast. Here the CPU
    # is sent down that path (no written-out scores) to check queries_at there: same loss and gradients
    # as the model's own, to bf16's precision.
    monkeypatch.setattr(modeling, "_EAGER_SCORES_LIMIT", 0)
    objective = tiny_objective(positions=positions).train()
    objective.model.albert.set_attn_implementation("sdpa")
    data = SyntheticPretraining(n=6)
    batch = {k: torch.stack([data[i][k] for i in range(6)]) for k in data[0]}
    batch["attention_mask"][2, 10:] = 0
    batch["labels"][2, 10:] = -100

    def run(forward) -> tuple[float, torch.Tensor]:
        objective.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = forward(**batch).loss
        loss.backward()
        grads = [p.grad.flatten() for p in objective.model.parameters() if p.grad is not None]
        return float(loss.detach()), torch.cat(grads)

    loss, grads = run(objective)
    ref_loss, ref_grads = run(objective.model)
    assert abs(loss - ref_loss) < 2e-2 * abs(ref_loss)
    assert F.cosine_similarity(grads, ref_grads, dim=0) > 0.999


# ---- the loop ------------------------------------------------------------------------------------------------


def test_resume_after_sigint_reproduces_the_uninterrupted_run(tmp_path):
    # Dropout on: the resumed run must also restore the random streams, not only weights and optimizer.
    data = SyntheticPretraining()
    full = train(tiny_objective(dropout=0.1), data, run_config(tmp_path / "full"))
    assert full.step == 6 and not full.interrupted

    def interrupt_at_step_3(row):
        if row["step"] == 3:
            os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "split"
    first = train(tiny_objective(dropout=0.1), data, run_config(out), on_log=interrupt_at_step_3)
    assert first.interrupted and first.signal == signal.SIGINT and first.exit_code == 130
    assert first.step == 3 and [p.name for p in list_checkpoints(out)] == ["step-00000003"]
    # A fresh model object (different weights) is fine: everything comes from the checkpoint.
    second = train(tiny_objective(dropout=0.1, seed=99), data, run_config(out, resume=True))
    assert second.step == 6 and not second.interrupted

    keys = ("step", "loss", "mlm_loss", "sop_loss", "mlm_accuracy", "lr", "grad_norm")
    expected = [{k: r[k] for k in keys} for r in read_metrics(tmp_path / "full")]
    got = [{k: r[k] for k in keys} for r in read_metrics(out)]
    assert got == expected
    for name, tensor in final_weights(tmp_path / "full").items():
        assert torch.equal(tensor, final_weights(out)[name]), name


@pytest.mark.parametrize("stop", ["stop_after", "checkpoint_then_crash"])
def test_resume_logs_the_rows_of_the_uninterrupted_run_between_rows(tmp_path, stop):
    # With log_every 4, a pause at step 3 logged a row of steps 1-3 and the resumed run's step-4 row held
    # step 4 alone; a crash after a checkpoint mid-row lost steps 1-2 from metrics.jsonl.
    data = SyntheticPretraining()
    config = dict(log_every=4, max_steps=9)
    train(tiny_objective(), data, run_config(tmp_path / "full", **config))
    out = tmp_path / "split"
    if stop == "stop_after":
        first = train(tiny_objective(), data, run_config(out, stop_after=3, **config))
        assert first.interrupted and read_metrics(out)[-1] == read_metrics(out)[-1] | {
            "partial": True,
            "step": 3,
        }
    else:
        first = train(tiny_objective(), data, run_config(out, save_every=2, stop_after=3, **config))
        (out / "checkpoints" / "step-00000003").rename(out / "gone")  # the run died after step 2's checkpoint
        shutil.rmtree(out / "gone")
    train(tiny_objective(), data, run_config(out, resume=True, **config))
    keys = ("step", "loss", "mlm_loss", "sop_loss", "mlm_accuracy", "lr", "grad_norm")
    expected = [{k: r[k] for k in keys} for r in read_metrics(tmp_path / "full")]
    got = [{k: r[k] for k in keys} for r in read_metrics(out)]
    assert [r["step"] for r in expected] == [4, 8, 9]
    assert len(got) == len(expected)
    for ours, theirs in zip(got, expected):
        assert ours == pytest.approx(theirs, rel=1e-12)


def test_resuming_with_another_schedule_says_so(tmp_path):
    out = tmp_path / "run"
    train(tiny_objective(), SyntheticPretraining(), run_config(out, stop_after=3))
    with pytest.warns(
        UserWarning, match=r"max_steps 8 instead of 6: the learning-rate schedule and weight decay"
    ):
        train(tiny_objective(), SyntheticPretraining(), run_config(out, max_steps=8, resume=True))


def test_the_polynomial_schedule_runs_and_resuming_with_another_says_so(tmp_path):
    out = tmp_path / "run"
    poly = dict(lr_schedule="polynomial", poly_power=2.0, warmup_steps=2, log_every=1)
    train(tiny_objective(), SyntheticPretraining(), run_config(out, stop_after=3, **poly))
    lrs = [r["lr"] for r in read_metrics(out)]  # (a row's lr is the next step's, as transformers logs it)
    assert lrs == pytest.approx([3e-3 / 2, 3e-3 * (1 - 2 / 6) ** 2, 3e-3 * (1 - 3 / 6) ** 2])
    with pytest.warns(UserWarning, match=r"lr_schedule linear instead of polynomial, poly_power 1.0 instead"):
        train(tiny_objective(), SyntheticPretraining(), run_config(out, resume=True, warmup_steps=2))


def test_resuming_with_a_new_learning_rate_and_weight_decay_uses_them(tmp_path):
    # Before, the warning said so while the optimizer's and scheduler's saved state put the old values back.
    out, fresh = tmp_path / "run", tmp_path / "fresh"
    train(tiny_objective(), SyntheticPretraining(), run_config(out, stop_after=3, log_every=1))
    new = dict(learning_rate=1e-2, weight_decay=0.5, log_every=1)
    with pytest.warns(
        UserWarning, match=r"learning_rate 0.01 instead of 0.003, weight_decay 0.5 instead of 0.01"
    ):
        train(tiny_objective(), SyntheticPretraining(), run_config(out, resume=True, **new))
    train(tiny_objective(), SyntheticPretraining(), run_config(fresh, **new))
    lrs = {r["step"]: r["lr"] for r in read_metrics(out)}
    expected = {r["step"]: r["lr"] for r in read_metrics(fresh)}
    assert [lrs[s] for s in (4, 5, 6)] == pytest.approx([expected[s] for s in (4, 5, 6)])
    state = torch.load(out / "checkpoints" / "step-00000006" / "trainer_state.pt", weights_only=True)
    assert {g["weight_decay"] for g in state["optimizer"]["param_groups"]} == {0.0, 0.5}
    with pytest.raises(ValueError, match="was trained with lamb; resume it with that optimizer"):
        train(
            tiny_objective(),
            SyntheticPretraining(),
            run_config(out, resume=True, max_steps=9, optimizer="adamw"),
        )


def test_resuming_a_finished_run_or_past_its_steps(tmp_path, capsys):
    # Before: a traceback from the final export (a finished run), or a run that stopped "at step 6, checkpoint
    # None" when max_steps or stop_after was not past the checkpoint.
    out = tmp_path / "run"
    train(tiny_objective(), SyntheticPretraining(), run_config(out))
    weights = final_weights(out)
    again = train(tiny_objective(seed=5), SyntheticPretraining(), run_config(out, resume=True))
    assert again.step == 6 and not again.interrupted and "nothing left to train" in capsys.readouterr().err
    assert all(torch.equal(weights[k], v) for k, v in final_weights(out).items())
    with pytest.raises(ValueError, match="is at step 6, past this run's 4 steps"):
        train(tiny_objective(), SyntheticPretraining(), run_config(out, resume=True, max_steps=4))
    with pytest.raises(ValueError, match=r"stop_after \(5\) is not past the checkpoint's step 6"):
        train(
            tiny_objective(), SyntheticPretraining(), run_config(out, resume=True, max_steps=9, stop_after=5)
        )


def test_resuming_a_finished_run_evaluates_it_no_more(tmp_path):
    # Its last checkpoint is written before its last evaluation: each resume evaluated (and logged) it again.
    out = tmp_path / "run"
    config = dict(max_steps=5, eval_every=2)
    held_out = SyntheticPretraining(n=8, seed=3)
    train(tiny_objective(), SyntheticPretraining(), run_config(out, **config), eval_dataset=held_out)
    rows = read_metrics(out)
    for _ in range(2):
        train(
            tiny_objective(),
            SyntheticPretraining(),
            run_config(out, resume=True, **config),
            eval_dataset=held_out,
        )
    assert [r["step"] for r in read_metrics(out) if "eval_loss" in r] == [2, 4, 5]
    assert read_metrics(out) == rows


def test_resuming_with_a_model_of_another_shape_says_so(tmp_path):
    out = tmp_path / "run"
    train(tiny_objective(), SyntheticPretraining(), run_config(out, stop_after=3))
    wider = tiny_objective()
    config = wider.model.config
    config.intermediate_size = 48
    wider = PretrainingObjective(AlbertForPreTraining(config))
    with pytest.raises(ValueError, match=r"of a model of another shape .*resume with the model and config"):
        train(wider, SyntheticPretraining(), run_config(out, resume=True))


def test_stop_after_pauses_on_the_same_schedule(tmp_path):
    data = SyntheticPretraining()
    train(tiny_objective(), data, run_config(tmp_path / "full"))
    out = tmp_path / "paused"
    first = train(tiny_objective(), data, run_config(out, stop_after=4))
    assert first.step == 4 and first.interrupted and first.signal is None and first.exit_code == 0
    assert not (out / "model.safetensors").exists()  # no final export: the run is not finished
    uneven = train(tiny_objective(), data, run_config(tmp_path / "uneven", stop_after=5, log_every=2))
    assert uneven.step == 5 and [r["step"] for r in read_metrics(tmp_path / "uneven")] == [2, 4, 5]
    second = train(tiny_objective(seed=99), data, run_config(out, resume=True))
    assert second.step == 6 and not second.interrupted
    assert [r["lr"] for r in read_metrics(out)] == [r["lr"] for r in read_metrics(tmp_path / "full")]
    for name, tensor in final_weights(tmp_path / "full").items():
        assert torch.equal(tensor, final_weights(out)[name]), name


def test_checkpoints_are_pruned_complete_and_guarded(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints" / ".tmp-step-00000009-junk").mkdir(parents=True)  # debris of a killed save
    result = train(
        tiny_objective(), SyntheticPretraining(), run_config(out, save_every=2, keep_last=2, plot=True)
    )
    assert [p.name for p in list_checkpoints(out)] == ["step-00000004", "step-00000006"]
    assert latest_checkpoint(out) == result.last_checkpoint == out / "checkpoints" / "step-00000006"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000004", "step-00000006"]
    assert (out / "curves.png").stat().st_size > 1000
    state = torch.load(out / "checkpoints" / "step-00000006" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 6 and state["sampler"]["epoch"] == 0 and state["sampler"]["position"] == 6
    assert set(state["rng"][0]) >= {"python", "numpy", "torch"}
    # An incomplete snapshot (no trainer state) is never picked for resume.
    (out / "checkpoints" / "step-00000099").mkdir()
    assert latest_checkpoint(out).name == "step-00000006"
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train(tiny_objective(), SyntheticPretraining(), run_config(out))


def test_gradient_accumulation_equals_the_big_batch(tmp_path):
    data = SyntheticPretraining()
    big = train(tiny_objective(), data, run_config(tmp_path / "big", batch_size=8, max_steps=3))
    accumulated = train(
        tiny_objective(), data, run_config(tmp_path / "acc", batch_size=4, grad_accum=2, max_steps=3)
    )
    a, b = final_weights(tmp_path / "big"), final_weights(tmp_path / "acc")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4)
    assert accumulated.last_loss == pytest.approx(big.last_loss, abs=1e-5)


def test_metrics_rows_and_periodic_eval(tmp_path):
    out = tmp_path / "run"
    result = train(
        tiny_objective(), SyntheticPretraining(), run_config(out, max_steps=4, log_every=2, eval_every=2),
        eval_dataset=SyntheticPretraining(n=12, seed=5),
    )  # fmt: skip
    rows = read_metrics(out)
    train_rows = [r for r in rows if "loss" in r]
    eval_rows = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in train_rows] == [2, 4] and [r["step"] for r in eval_rows] == [2, 4]
    for key in ("loss", "mlm_loss", "sop_loss", "mlm_accuracy", "sop_accuracy", "lr", "tokens_per_s",
                "grad_norm", "elapsed"):  # fmt: skip
        assert np.isfinite(train_rows[0][key]), key
    assert train_rows[0]["loss"] == pytest.approx(
        train_rows[0]["mlm_loss"] + train_rows[0]["sop_loss"], rel=1e-5
    )
    assert 0 <= eval_rows[-1]["eval_mlm_accuracy"] <= 1
    assert result.metrics["eval_loss"] == eval_rows[-1]["eval_loss"]


def test_evaluations_and_checkpoints_at_the_end_of_each_epoch(tmp_path):
    # 10 batches an epoch, 3 a step: epochs end within steps 4, 7 and 10. Fine-tuning evaluated every
    # 10 // 3 = 3 steps instead (3, 6, 9 and 10), drifting away from the epochs.
    out = tmp_path / "run"
    steps = []
    train(
        tiny_objective(), SyntheticPretraining(n=80),
        run_config(out, max_steps=None, num_epochs=3, grad_accum=3, eval_every="epoch", save_every="epoch",
                   keep_last=5, log_every=1),
        evaluate=lambda module: steps.append(len(steps)) or {"score": 1.0},
    )  # fmt: skip
    rows = read_metrics(out)
    assert [r["step"] for r in rows if "score" in r] == [4, 7, 10] and len(steps) == 3
    epochs = {r["step"]: r["epoch"] for r in rows if "loss" in r}
    assert [epochs[s] for s in (3, 4, 6, 7, 10)] == [0.9, 1.2, 1.8, 2.1, 3.0]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [f"step-{s:08d}" for s in (4, 7, 10)]
    with pytest.raises(ValueError, match="eval_every must be a number of steps >= 0 or 'epoch'"):
        train(tiny_objective(), SyntheticPretraining(), run_config(tmp_path / "x", eval_every="weekly"))


def test_best_checkpoint_and_early_stopping(tmp_path):
    out = tmp_path / "run"
    scores = iter([0.5, 0.7, 0.6, 0.6, 0.6])  # best at the second evaluation, then two without improvement
    result = train(
        tiny_objective(), SyntheticPretraining(),
        run_config(out, max_steps=10, eval_every=1, best_metric="score", early_stopping_patience=2),
        evaluate=lambda module: {"score": next(scores)},
    )  # fmt: skip
    assert result.early_stopped and result.step == 4 and result.best_metric == 0.7
    assert (out / "best" / "model.safetensors").is_file()
    # The exported model is the best one, not the last.
    assert torch.equal(
        final_weights(out)["model.albert.embeddings.word_embeddings.weight"],
        load_file(str(out / "best" / "model.safetensors"))["model.albert.embeddings.word_embeddings.weight"],
    )
    # A resume of the stopped run trains no further (it went on to max_steps, silently).
    exported = final_weights(out)
    again = train(
        tiny_objective(), SyntheticPretraining(),
        run_config(out, max_steps=10, eval_every=1, best_metric="score", early_stopping_patience=2, resume=True),
        evaluate=lambda module: pytest.fail("evaluated again"),
    )  # fmt: skip
    assert again.early_stopped and again.step == 4 and not again.interrupted
    assert all(torch.equal(v, final_weights(out)[k]) for k, v in exported.items())


def test_a_nan_score_is_never_the_best(tmp_path):
    out = tmp_path / "run"
    scores = iter([float("nan"), 0.4, float("nan"), 0.3])
    result = train(
        tiny_objective(), SyntheticPretraining(),
        run_config(out, max_steps=4, eval_every=1, best_metric="score"),
        evaluate=lambda module: {"score": next(scores)},
    )  # fmt: skip
    assert result.best_metric == 0.4


@pytest.mark.parametrize("log_every", [1, 3])
def test_divergence_stops_the_run_before_anything_non_finite_is_saved(tmp_path, log_every):
    out = tmp_path / "run"
    objective = tiny_objective()
    # Finite for two steps, then the weights go NaN: as a learning rate far too high does.
    config = run_config(out, max_steps=8, save_every=2, log_every=log_every, optimizer="adamw")
    calls = {"n": 0}
    real_step = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        calls["n"] += 1
        out = real_step(self, *args, **kwargs)
        if calls["n"] == 3:
            with torch.no_grad():
                next(iter(objective.parameters())).fill_(float("nan"))
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim.AdamW, "step", step)
        with pytest.raises(
            TrainingDiverged, match=r"training diverged by step .*its last checkpoint \(step-00000002\)"
        ):
            train(objective, SyntheticPretraining(), config)
    checkpoints = list_checkpoints(out)
    assert [c.name for c in checkpoints] == ["step-00000002"]
    for name, tensor in load_file(str(checkpoints[0] / "model.safetensors")).items():
        assert torch.isfinite(tensor).all(), name
    assert not (out / "model.safetensors").exists()
    assert all(np.isfinite(row["loss"]) for row in read_metrics(out) if "loss" in row)


def test_an_empty_evaluation_set_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="evaluation dataset is empty"):
        train(
            tiny_objective(),
            SyntheticPretraining(),
            run_config(tmp_path),
            eval_dataset=torch.utils.data.Subset(SyntheticPretraining(), []),
        )
    assert not (tmp_path / "metrics.jsonl").exists() or not read_metrics(tmp_path)


def test_num_epochs_sets_the_number_of_steps(tmp_path):
    result = train(
        tiny_objective(), SyntheticPretraining(), run_config(tmp_path, max_steps=None, num_epochs=0.5)
    )
    assert result.step == 4  # 64 examples / batch 8 = 8 steps per epoch


def test_bf16_autocast_on_cpu(tmp_path):
    result = train(
        tiny_objective(), SyntheticPretraining(), run_config(tmp_path / "bf16", max_steps=2, bf16=True)
    )
    assert np.isfinite(result.last_loss)


def test_config_errors(tmp_path):
    data = SyntheticPretraining()
    with pytest.raises(ValueError, match="max_steps or num_epochs"):
        train(tiny_objective(), data, run_config(tmp_path, max_steps=None))
    with pytest.raises(ValueError, match="unknown optimizer"):
        train(tiny_objective(), data, run_config(tmp_path, optimizer="sgd"))
    with pytest.raises(ValueError, match="warmup_steps"):
        train(tiny_objective(), data, run_config(tmp_path, warmup_steps=7))
    with pytest.raises(ValueError, match="map-style"):
        train(tiny_objective(), iter([]), run_config(tmp_path))
    with pytest.raises(
        ValueError, match="resume continues the run in output_dir and overwrite starts it over"
    ):
        train(tiny_objective(), data, run_config(tmp_path, resume=True, overwrite=True))
    with pytest.raises(ValueError, match="max_grad_norm must be >= 0"):  # it would flip every gradient
        train(tiny_objective(), data, run_config(tmp_path, max_grad_norm=-1.0))
    with pytest.raises(
        ValueError, match="cuda_graphs replays one whole step a batch, so grad_accum must be 1"
    ):
        train(tiny_objective(), data, run_config(tmp_path, cuda_graphs=True, grad_accum=2))
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device; this run trains on cpu"):
        train(tiny_objective(), data, run_config(tmp_path, cuda_graphs=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize(("optimizer", "bf16"), [("lamb", False), ("adamw", False), ("lamb", True)])
def test_steps_replayed_from_cuda_graphs_equal_the_usual_steps(tmp_path, optimizer, bf16):
    # Pretraining's objective at a fixed number of positions (4 masked tokens a row), a schedule with
    # warm-up, clipping and periodic checkpoints; the graphs start at step 4 (3 steps before the capture).
    runs = {}
    for graphs in (False, True):
        out = tmp_path / f"graphs-{graphs}"
        objective = tiny_objective()
        objective.max_predictions = 4
        config = run_config(out, device="cuda", optimizer=optimizer, bf16=bf16, cuda_graphs=graphs,
                            max_steps=8, save_every=4, max_grad_norm=0.5)  # fmt: skip
        runs[graphs] = train(objective, SyntheticPretraining(), config), read_metrics(out), final_weights(out)
    (usual, usual_rows, usual_weights), (graphed, graphed_rows, graphed_weights) = runs[False], runs[True]
    tolerance = 2e-3 if bf16 else 1e-5
    assert graphed.step == usual.step == 8
    for a, b in zip(usual_rows, graphed_rows, strict=True):
        for key in ("loss", "mlm_loss", "mlm_accuracy", "sop_loss", "grad_norm", "lr"):
            assert b[key] == pytest.approx(a[key], abs=tolerance), (a["step"], key)
    for name in usual_weights:
        torch.testing.assert_close(
            graphed_weights[name], usual_weights[name], atol=tolerance, rtol=0, msg=name
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("optimizer", ["lamb", "adamw"])
def test_a_run_resumes_with_or_without_cuda_graphs(tmp_path, optimizer):
    # Checkpoints keep the learning rate as a number and the optimizer not capturable, as an eager run
    # writes them: an eager run continues with graphs, and a graphed run continues without them.
    def run(out, graphs, max_steps, stop_after=None, resume=False):
        objective = tiny_objective()
        objective.max_predictions = 4
        config = run_config(out, device="cuda", optimizer=optimizer, cuda_graphs=graphs, max_steps=max_steps,
                            stop_after=stop_after, resume=resume, save_every=4)  # fmt: skip
        return train(objective, SyntheticPretraining(), config)

    run(tmp_path / "straight", False, 8)
    for first, second in ((False, True), (True, False)):
        out = tmp_path / f"{first}-{second}"
        run(out, first, 8, stop_after=4)
        run(out, second, 8, resume=True)
        a, b = final_weights(tmp_path / "straight"), final_weights(out)
        for name in a:
            torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=0, msg=(first, second, name))


def test_the_last_checkpoint_is_saved_before_the_last_evaluation(tmp_path):
    # an evaluation that fails at the end of a run loses no training: the run resumes from its last step
    def failing(module):
        raise RuntimeError("evaluation failed")

    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="evaluation failed"):
        train(
            tiny_objective(),
            SyntheticPretraining(),
            run_config(out, max_steps=3, save_every=0),
            evaluate=failing,
        )
    assert (out / "checkpoints" / "step-00000003").is_dir()


# ---- several processes -----------------------------------------------------------------------------------------

WORKER = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_training_loop import SyntheticPretraining, run_config, tiny_objective
from openalbert.training import train

out, fsdp, positions = Path(sys.argv[1]), sys.argv[2] == "fsdp", sys.argv[3]
# 2 processes x 2 examples x 2 accumulated micro-batches = the single process's batch of 8.
config = run_config(out, batch_size=2, grad_accum=2, max_steps=3, fsdp=fsdp, eval_batch_size=2)
train(tiny_objective(positions=positions), SyntheticPretraining(), config, eval_dataset=SyntheticPretraining(n=7, seed=5))
"""


def _torchrun(tmp_path: Path, out: Path, mode: str, positions: str = "absolute") -> None:
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER.format(tests=str(TESTS))))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(out), mode, positions]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize(
    "mode, positions",
    [
        ("ddp", "absolute"),
        # relative positions leave the absolute table unread: DDP must not wait for its gradient
        ("ddp", "relative_key"),
        # (FSDP2 on gloo: seconds each, in the default run since its checkpoint broke unseen while slow-marked)
        ("fsdp", "absolute"),
        ("fsdp", "relative_key"),
    ],
)
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, mode, positions):
    _torchrun(tmp_path, tmp_path / "two", mode, positions)
    one_config = run_config(tmp_path / "one", batch_size=8, max_steps=3)
    held_out = SyntheticPretraining(n=7, seed=5)  # (an odd count: one process evaluates one example fewer)
    train(tiny_objective(positions=positions), SyntheticPretraining(), one_config, eval_dataset=held_out)
    one, two = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-5, rtol=1e-4, msg=name)
    losses = lambda out: [r["loss"] for r in read_metrics(out) if "loss" in r]  # noqa: E731
    np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=1e-5)
    # evaluation counts each example once (the repeat that evens out the processes' forwards counted too)
    evals = lambda out: {k: v for r in read_metrics(out) for k, v in r.items() if k.startswith("eval_")}  # noqa: E731
    one_eval, two_eval = evals(tmp_path / "one"), evals(tmp_path / "two")
    assert one_eval.keys() == two_eval.keys() and "eval_mlm_accuracy" in one_eval
    for key in one_eval:
        assert two_eval[key] == pytest.approx(one_eval[key], rel=1e-4, abs=1e-6), key


def test_resuming_from_an_older_checkpoint_replaces_the_later_ones(tmp_path):
    # keep_last pruned by step: the new step-4 was removed at once (its path returned), and a later
    # resume took the abandoned step-6 for the newest.
    out = tmp_path / "run"
    train(tiny_objective(), SyntheticPretraining(), run_config(out, save_every=2, keep_last=3))
    assert [p.name for p in list_checkpoints(out)] == ["step-00000002", "step-00000004", "step-00000006"]
    with pytest.warns(UserWarning, match="the later checkpoints step-00000004, step-00000006 are removed"):
        result = train(
            tiny_objective(),
            SyntheticPretraining(),
            run_config(out, resume=out / "checkpoints" / "step-00000002", stop_after=4, keep_last=1),
        )
    assert result.last_checkpoint.is_dir() and result.last_checkpoint.name == "step-00000004"
    assert [p.name for p in list_checkpoints(out)] == ["step-00000004"]


def test_resuming_on_other_data_is_refused_and_other_options_are_named(tmp_path):
    out = tmp_path / "run"
    train(tiny_objective(), SyntheticPretraining(), run_config(out, stop_after=3, data_id="a", seed=1))
    with pytest.raises(ValueError, match="was trained on other data than this run's"):
        train(tiny_objective(), SyntheticPretraining(), run_config(out, resume=True, data_id="b", seed=1))
    with pytest.warns(UserWarning) as caught:
        train(tiny_objective(), SyntheticPretraining(),
              run_config(out, resume=True, data_id="a", grad_accum=2, max_grad_norm=0.5, seed=2))  # fmt: skip
    said = " | ".join(str(w.message) for w in caught)
    assert "grad_accum 2 instead of 1, max_grad_norm 0.5 instead of 1.0" in said
    assert "seed 2 is not used" in said


def test_a_damaged_checkpoint_or_a_cut_metrics_row_is_named(tmp_path):
    # Before: a raw traceback for a damaged file, "Unterminated string" for a row cut by a crash.
    out = tmp_path / "run"
    train(tiny_objective(), SyntheticPretraining(), run_config(out, stop_after=3, save_every=1, keep_last=2))
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "loss": 1.2')  # a crash while the next row was written
    newest = out / "checkpoints" / "step-00000003"
    state = (newest / "trainer_state.pt").read_bytes()
    (newest / "trainer_state.pt").write_bytes(state[: len(state) // 2])
    with pytest.raises(ValueError, match=r"step-00000003 is damaged: its trainer_state.pt cannot be read"):
        train(tiny_objective(), SyntheticPretraining(), run_config(out, resume=True))
    (newest / "trainer_state.pt").write_bytes(state)
    weights = (newest / "model.safetensors").read_bytes()
    (newest / "model.safetensors").write_bytes(weights[:100])
    with pytest.raises(
        ValueError, match=r"is damaged: its model.safetensors cannot be read .*remove that checkpoint"
    ):
        train(tiny_objective(), SyntheticPretraining(), run_config(out, resume=True))
    shutil.rmtree(newest)
    with pytest.warns(UserWarning, match="its last row was cut short"):
        result = train(tiny_objective(), SyntheticPretraining(), run_config(out, resume=True))
    assert result.step == 6 and [r["step"] for r in read_metrics(out)] == [1, 2, 3, 4, 5, 6]
