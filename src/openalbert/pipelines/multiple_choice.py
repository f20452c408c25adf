"""multiple-choice: score candidate endings of a prompt (SWAG, RACE, COPA style).

transformers has no pipeline for this task; the output is ours: one `{"choice", "index", "score"}`
per candidate, best first, the scores a softmax over the candidates.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from openalbert.heads import AlbertForMultipleChoice
from openalbert.pipelines.base import Feature, Pipeline, is_int, top_two_gap, truncate_pair


class MultipleChoicePipeline(Pipeline):
    """`pipe({"prompt": str, "choices": [str, ...]})` -> `[{"choice", "index", "score"}, ...]` best first.

    Also `pipe(prompt, choices=[...])`. Each candidate is encoded as the pair `[CLS] prompt [SEP] choice
    [SEP]` and scored independently; `top_k` keeps the best k (all by default).
    """

    task = "multiple-choice"
    model_class = AlbertForMultipleChoice
    head_description = "multiple-choice head (classifier.* of shape (1, hidden))"
    json_input = True

    def __call__(
        self,
        inputs: Any,
        *,
        choices: list[str] | None = None,
        batch_size: int | None = None,
        **params: Any,
    ) -> Any:
        """Score the choices of one prompt or of a list of `{"prompt", "choices"}` dicts."""
        if choices is not None:
            if not isinstance(inputs, str):
                raise TypeError("choices= goes with a single prompt string")
            inputs = {"prompt": inputs, "choices": choices}
        return super().__call__(inputs, batch_size=batch_size, **params)

    def _check_params(self, top_k: int | None = None) -> dict[str, Any]:
        if top_k is not None and (not is_int(top_k) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer or None (all choices), got {top_k!r}")
        return {"top_k": top_k}

    def _as_items(self, inputs: Any) -> tuple[list[Any], bool]:
        if isinstance(inputs, dict):
            return [inputs], True
        return super()._as_items(inputs)

    def _check_input(self, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict) or "prompt" not in item or "choices" not in item:
            raise ValueError(
                'a multiple-choice input is a dict {"prompt": str, "choices": [str, ...]}, got '
                + (f"keys {sorted(item)}" if isinstance(item, dict) else type(item).__name__)
            )
        if not isinstance(item["prompt"], str):
            raise TypeError(f'"prompt" must be a str, got {type(item["prompt"]).__name__}')
        choices = item["choices"]
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            raise ValueError(f'"choices" must be a non-empty list of strings, got {choices!r:.80}')
        return item

    @classmethod
    def parse_line(cls, line: str) -> Any:
        value = json.loads(line)
        if isinstance(value, dict) and "question" in value and "prompt" not in value:
            # a line of a fine-tuning file ({context, question, choices, label}): its prompt as training made it
            return {
                "prompt": choice_prompt(value["question"], value.get("context")),
                "choices": value.get("choices"),
            }
        return value

    def _preprocess(self, item: dict[str, Any], params: dict[str, Any]) -> list[Feature]:
        encoded = [ids for ids, _ in self._encode([item["prompt"], *item["choices"]])]
        prompt, endings = encoded[0], encoded[1:]
        budget = self._max_length() - 3
        return [self._build(*truncate_pair(prompt, ending, budget)) for ending in endings]

    def _forward(self, model: Any, batch: dict[str, torch.Tensor], features: list[Feature]) -> list[Any]:
        # Choices are scored independently, so a batch of rows goes in as one prompt with many choices.
        logits = model(**{k: v[None] for k, v in batch.items()}, return_dict=True).logits  # (1, B)
        return list(logits[0].float().cpu())

    def _margin(self, features: list[Feature], outputs: list[Any], params: dict[str, Any]) -> float:
        return top_two_gap(torch.stack(outputs))  # one logit per choice

    def _postprocess(
        self, item: dict[str, Any], features: list[Feature], outputs: list[Any], params: dict[str, Any]
    ) -> Any:
        scores = torch.stack(outputs).softmax(-1).tolist()
        ranked = [
            {"choice": c, "index": i, "score": s} for i, (c, s) in enumerate(zip(item["choices"], scores))
        ]
        ranked.sort(key=lambda d: d["score"], reverse=True)
        return ranked if params["top_k"] is None else ranked[: params["top_k"]]


def choice_prompt(question: Any, context: Any = None) -> Any:
    """The prompt of a multiple-choice example: its context and question joined by a space (the question
    alone without a context), as fine-tuning builds it."""
    if isinstance(context, str) and context.strip() and isinstance(question, str):
        return f"{context} {question}".strip()
    return question
