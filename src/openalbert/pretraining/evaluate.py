"""Held-out masked-token accuracy: how often a masked-LM model's top-1 guess is the hidden token.

The whole text is cut into windows of `seq_len` tokens (`[CLS] ... [SEP]`); in each, a share
`mask_prob` of the tokens is replaced by `[MASK]` and predicted at once. Unlike the training
examples there is no 80/10/10 replacement and no n-gram masking: every chosen token is `[MASK]`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm


def _documents(files: Iterable[str | Path]) -> list[str]:
    docs = []
    for path in files:
        text = Path(path).read_text(encoding="utf-8")
        docs.extend(block.strip() for block in text.split("\n\n") if block.strip())
    return docs


@torch.no_grad()
def masked_token_accuracy(
    model: torch.nn.Module,
    tokenizer: Any,
    files: Iterable[str | Path],
    *,
    mask_prob: float = 0.15,
    seq_len: int = 128,
    batch_size: int = 32,
    max_windows: int | None = None,
    seed: int = 0,
    progress: bool = True,
    return_predictions: bool = False,
) -> dict[str, Any]:
    """Top-1 accuracy of `model` (a masked-LM head) on `mask_prob` of the tokens of `files`.

    With `return_predictions`, "predictions" holds every top-1 guess in order: the same `seed` masks
    the same tokens, so two models' guesses can be compared one by one (quantisation agreement).
    """
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
    windows = token_windows(tokenizer, files, seq_len)
    if max_windows is not None:
        windows = windows[:max_windows]
    device = next(model.parameters()).device
    model.eval()
    correct = total = 0
    guesses = []
    batches = masked_windows(tokenizer, windows, mask_prob=mask_prob, seed=seed, batch_size=batch_size)
    n_batches = -(-len(windows) // batch_size)
    for ids, attention, chosen, targets in tqdm(
        batches, total=n_batches, desc="masked-token accuracy", disable=not progress
    ):
        logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits
        predictions = logits[chosen.to(device)].argmax(-1).cpu()
        correct += int((predictions == targets).sum())
        guesses.append(predictions)
        total += int(targets.numel())
    result = {
        "accuracy": correct / total,
        "masked_tokens": total,
        "windows": len(windows),
        "tokens": sum(len(w) for w in windows),
        "mask_prob": mask_prob,
        "seq_len": seq_len,
    }
    if return_predictions:
        result["predictions"] = torch.cat(guesses)
    return result


def token_windows(tokenizer: Any, files: Iterable[str | Path], seq_len: int) -> list[list[int]]:
    """Each document of `files` cut into consecutive windows of up to `seq_len` - 2 token ids (room for
    [CLS] and [SEP]); a document's last window may be shorter."""
    docs = _documents(files)
    if not docs:
        raise ValueError("no text to evaluate on: the files are empty")
    encoded = tokenizer(docs, add_special_tokens=False, verbose=False)["input_ids"]
    body = seq_len - 2
    return [ids[i : i + body] for ids in encoded for i in range(0, len(ids), body) if ids[i : i + body]]


def masked_windows(
    tokenizer: Any, windows: list[list[int]], *, mask_prob: float, seed: int, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """`[CLS] window [SEP]` batches with `mask_prob` of each window's tokens replaced by [MASK] (seeded):
    (input_ids, attention_mask, chosen positions (B, T) bool, the hidden ids at those positions)."""
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        width = max(len(w) for w in chunk) + 2
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        chosen = torch.zeros_like(ids, dtype=torch.bool)
        for row, w in enumerate(chunk):
            ids[row, : len(w) + 2] = torch.tensor([tokenizer.cls_token_id, *w, tokenizer.sep_token_id])
            attention[row, : len(w) + 2] = 1
            n = max(1, round(mask_prob * len(w)))
            chosen[row, 1 + torch.randperm(len(w), generator=gen)[:n]] = True
        targets = ids[chosen]
        ids[chosen] = tokenizer.mask_token_id
        yield ids, attention, chosen, targets
