"""text-classification: labels and scores for a text or a text pair, as transformers' TextClassificationPipeline."""

from __future__ import annotations

import json
from typing import Any

import torch

from openalbert.heads import AlbertForSequenceClassification
from openalbert.pipelines.base import Feature, Pipeline, top_two_gap, truncate_pair

FUNCTIONS = {
    "softmax": lambda logits: logits.softmax(-1),
    "sigmoid": torch.sigmoid,
    "none": lambda logits: logits,
}
_UNSET: Any = object()


class TextClassificationPipeline(Pipeline):
    """`pipe(text)` -> `[{"label", "score"}]`; `pipe(text, top_k=k)` -> the k best, `top_k=None` -> all.

    transformers' conventions are kept: without `top_k` each input gives its best label as a dict (and a
    single string input is wrapped in a list); with `top_k` each input gives a list sorted by score.
    A pair is passed as `{"text": ..., "text_pair": ...}`. Scores are softmax over the labels, sigmoid
    for one label or multi-label models, raw logits for regression, unless `function_to_apply` says.
    """

    task = "text-classification"
    model_class = AlbertForSequenceClassification
    head_description = "sequence-classification head (classifier.*)"

    def _check_params(
        self, top_k: int | None = _UNSET, function_to_apply: str | None = None
    ) -> dict[str, Any]:
        if top_k is not _UNSET and top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer or None (all labels), got {top_k!r}")
        if function_to_apply is not None:
            function_to_apply = str(function_to_apply).lower()
            if function_to_apply not in FUNCTIONS:
                raise ValueError(
                    f"function_to_apply must be one of {sorted(FUNCTIONS)}, got {function_to_apply!r}"
                )
        return {"top_k": top_k, "function_to_apply": function_to_apply or self._default_function()}

    def _default_function(self) -> str:
        config = self.config
        if config.problem_type == "regression":
            return "none"
        if config.problem_type == "multi_label_classification" or config.num_labels == 1:
            return "sigmoid"
        return "softmax"

    def _as_items(self, inputs: Any) -> tuple[list[Any], bool]:
        if isinstance(inputs, (str, dict)):
            return [inputs], True
        return super()._as_items(inputs)

    def _check_input(self, item: Any) -> Any:
        if isinstance(item, dict):
            if set(item) - {"text", "text_pair"} or not isinstance(item.get("text"), str):
                raise ValueError(
                    'a text pair must be a dict {"text": str, "text_pair": str}, got keys '
                    + str(sorted(item))
                )
            if not isinstance(item.get("text_pair", ""), str):
                raise TypeError(f"text_pair must be a str, got {type(item['text_pair']).__name__}")
            return item
        return super()._check_input(item)

    @classmethod
    def parse_line(cls, line: str) -> Any:
        # A line holding a JSON object with "text" is a (possibly paired) input; anything else is plain text.
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                return line
            if isinstance(value, dict) and "text" in value:
                return value
        return line

    def _preprocess(self, item: Any, params: dict[str, Any]) -> list[Feature]:
        pair = isinstance(item, dict) and item.get("text_pair") is not None
        texts = (
            [item["text"], item["text_pair"]] if pair else [item["text"] if isinstance(item, dict) else item]
        )
        encoded = [ids for ids, _ in self._encode(texts)]
        first, second = truncate_pair(encoded[0], encoded[1] if pair else None, self._max_length() - 2 - pair)
        return [self._build(first, second)]

    def _forward(self, model: Any, batch: dict[str, torch.Tensor], features: list[Feature]) -> list[Any]:
        return list(model(**batch, return_dict=True).logits.float().cpu())

    def _margin(self, features: list[Feature], outputs: list[Any], params: dict[str, Any]) -> float:
        (logits,) = outputs
        if params["function_to_apply"] == "sigmoid":  # each label's side of 0.5: its logit's side of 0
            return float(logits.abs().min())
        return top_two_gap(logits)

    def _postprocess(
        self, item: Any, features: list[Feature], outputs: list[Any], params: dict[str, Any]
    ) -> Any:
        (logits,) = outputs
        scores = FUNCTIONS[params["function_to_apply"]](logits)
        id2label = self.config.id2label
        if params["top_k"] is _UNSET:
            best = int(scores.argmax())
            return {"label": id2label[best], "score": float(scores[best])}
        ranked = [{"label": id2label[i], "score": float(s)} for i, s in enumerate(scores.tolist())]
        ranked.sort(key=lambda d: d["score"], reverse=True)
        return ranked if params["top_k"] is None else ranked[: params["top_k"]]

    def _format(self, inputs: Any, results: list[Any], single: bool, call_params: dict[str, Any]) -> Any:
        if not single:
            return results
        # transformers wraps a lone string's best label in a list, but not a lone pair dict's.
        legacy = "top_k" not in self._params and "top_k" not in call_params
        return [results[0]] if legacy and isinstance(inputs, str) else results[0]
