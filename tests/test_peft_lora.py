"""LoRA adapters from PEFT on openalbert's classes, as users attach them to transformers' ALBERT: only the
adapters (and the new head) train, the adapter saves and loads back to the same outputs, and merging it into
the weights changes nothing."""

from __future__ import annotations

import pytest
import torch

import openalbert

peft = pytest.importorskip("peft")


def test_lora_trains_saves_loads_and_merges(tmp_path):
    torch.manual_seed(0)
    load = openalbert.AlbertForSequenceClassification.from_pretrained
    model = load(openalbert.DEFAULT_MODEL, num_labels=2)
    tokenizer = openalbert.AlbertTokenizer.from_pretrained(openalbert.DEFAULT_MODEL)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], task_type="SEQ_CLS")
    lora = peft.get_peft_model(model, config)
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in lora.named_parameters() if not p.requires_grad}

    batch = tokenizer(["a good film", "a bad film", "great", "awful"], padding=True, return_tensors="pt")
    labels = torch.tensor([1, 0, 1, 0])
    optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=2e-3)

    def eval_loss() -> float:
        lora.eval()
        with torch.no_grad():
            return lora(**batch, labels=labels).loss.item()

    before = eval_loss()
    lora.train()
    for _ in range(15):
        lora(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert eval_loss() < before
    assert all(torch.equal(p, frozen[n]) for n, p in lora.named_parameters() if n in frozen)

    lora.eval()
    with torch.no_grad():
        expected = lora(**batch).logits
    lora.save_pretrained(tmp_path / "adapter")
    torch.manual_seed(1)  # the new head's initialisation differs: the adapter must bring it back
    again = peft.PeftModel.from_pretrained(load(openalbert.DEFAULT_MODEL, num_labels=2), tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(**batch).logits, expected, atol=1e-5, rtol=1e-4)
        merged = again.merge_and_unload()
        assert type(merged) is openalbert.AlbertForSequenceClassification
        torch.testing.assert_close(merged(**batch).logits, expected, atol=1e-4, rtol=1e-4)
