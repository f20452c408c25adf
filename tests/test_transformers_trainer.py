"""Users' own transformers training code runs on openalbert's classes: transformers 4.57.1's Trainer with its
DataCollatorWithPadding (which calls our tokenizer's `pad`) trains, evaluates and predicts with our model."""

from __future__ import annotations

import pytest
import torch

import openalbert

transformers = pytest.importorskip("transformers")


def test_trainer_trains_evaluates_and_predicts_our_model(tmp_path):
    torch.manual_seed(0)
    model = openalbert.AlbertForSequenceClassification.from_pretrained(openalbert.DEFAULT_MODEL, num_labels=2)
    tokenizer = openalbert.AlbertTokenizer.from_pretrained(openalbert.DEFAULT_MODEL)
    texts = ["a good film", "a bad film", "great acting and a fine story", "awful"] * 8
    rows = [dict(tokenizer(t), labels=i % 2 == 0) for i, t in enumerate(texts)]
    rows = [r | {"labels": int(r["labels"])} for r in rows]
    before = model.classifier.weight.detach().clone()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=2, learning_rate=1e-3,
        report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, logging_steps=2,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=rows, eval_dataset=rows,
        data_collator=transformers.DataCollatorWithPadding(tokenizer),
    )  # fmt: skip
    losses = [h["loss"] for h in trainer.train() and trainer.state.log_history if "loss" in h]
    assert len(losses) >= 3 and all(torch.isfinite(torch.tensor(losses)))
    assert not torch.equal(model.classifier.weight, before)  # the optimizer reached our parameters
    assert trainer.evaluate()["eval_loss"] < losses[0]
    predictions = trainer.predict(rows).predictions
    assert predictions.shape == (len(rows), 2)
    model.eval()
    with torch.no_grad():
        direct = model(**tokenizer(texts[:3], padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(torch.from_numpy(predictions[:3]), direct, atol=1e-5, rtol=1e-4)
