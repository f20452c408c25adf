"""text-classification: labels and scores for a text or a text pair, as transformers' TextClassificationPipeline."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from openalbert.heads import AlbertForSequenceClassification
from openalbert.pipelines.base import (
    Feature,
    Pipeline,
    as_bool,
    check_max_length,
    is_int,
    json_line,
    top_two_gap,
    truncate_pair,
)

FUNCTIONS = {
    "softmax": lambda logits: logits.softmax(-1),
    "sigmoid": torch.sigmoid,
    "none": lambda logits: logits,
}
_UNSET: Any = object()
# transformers 4.57.1's words, so that a filter written for its warning also catches ours.
RETURN_ALL_SCORES_DEPRECATED = (
    "`return_all_scores` is now deprecated,  if want a similar functionality use `top_k=None` instead of"
    " `return_all_scores=True` or `top_k=1` instead of `return_all_scores=False`."
)


# truncation strategies transformers' tokenizer takes, and whether each cuts a text or a pair here (both
# sequences of a pair are cut by the longer first, as "longest_first")
# transformers' truncation strategies: which text of a pair is cut (longest_first: the longer, token by token)
TRUNCATIONS = {
    "longest_first": True,
    "only_first": "only_first",
    "only_second": "only_second",
    "do_not_truncate": False,
}


class TextClassificationPipeline(Pipeline):
    """`pipe(text)` -> `[{"label", "score"}]`; `pipe(text, top_k=k)` -> the k best, `top_k=None` -> all.

    transformers' conventions are kept: without `top_k` each input gives its best label as a dict; with
    `top_k` (at construction or in the call) each input gives a list sorted by score; a single string is
    wrapped in a list unless the call itself passes `top_k`. The deprecated `return_all_scores=True`
    gives every label in label order, `False` the best label, as in transformers 4.57.1. A pair is passed
    as `{"text": ..., "text_pair": ...}` (`text_pair` None: a single text). Scores are softmax over the
    labels, sigmoid for one label or multi-label models, raw logits for regression, unless
    `function_to_apply` says. The tokenizer options transformers forwards are taken: `truncation`
    (inputs are cut to the model's length unless it is False, which raises on a longer one),
    `max_length` (cuts shorter) and `padding` (no effect on the results).
    """

    task = "text-classification"
    model_class = AlbertForSequenceClassification
    head_description = "sequence-classification head (classifier.*)"

    def _check_params(
        self,
        top_k: int | None = _UNSET,
        function_to_apply: str | None = None,
        return_all_scores: bool | None = None,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        padding: Any = None,
        add_special_tokens: bool | None = None,
        return_token_type_ids: bool | None = None,
    ) -> dict[str, Any]:
        # "legacy": transformers' old output, a dict for top_k=1 and every label unsorted for top_k=None;
        # any top_k given wins over return_all_scores and gives the sorted list. An older checkpoint's
        # config.json may set return_all_scores: the default of a call that does not.
        if return_all_scores is None and isinstance(self.config.extra.get("return_all_scores"), bool):
            return_all_scores = self.config.extra["return_all_scores"]
        every = as_bool("return_all_scores", return_all_scores, False)
        if top_k is not _UNSET:
            if top_k is not None and (not is_int(top_k) or top_k < 0):
                raise ValueError(f"top_k must be an integer >= 0 or None (all labels), got {top_k!r}")
            legacy = False
        else:
            if return_all_scores is not None:
                # stacklevel: the caller of pipe(...) (through check_params and _call_params)
                warnings.warn(RETURN_ALL_SCORES_DEPRECATED, UserWarning, stacklevel=5)
            top_k, legacy = (None if every else 1), True
        if function_to_apply is not None:  # (a name, or transformers' ClassificationFunction member)
            function_to_apply = str(getattr(function_to_apply, "value", function_to_apply)).lower()
            if function_to_apply not in FUNCTIONS:
                raise ValueError(
                    f"function_to_apply must be one of {sorted(FUNCTIONS)}, got {function_to_apply!r}"
                )
        # transformers hands these to its tokenizer. Here an input is always cut to what the model takes,
        # unless truncation=False, which raises on a longer one; max_length cuts shorter (and implies
        # truncation, as in the tokenizer); padding changes no result (a batch is padded as it needs).
        if isinstance(truncation, str):
            if truncation not in TRUNCATIONS:
                raise ValueError(
                    f"truncation must be a bool or one of {sorted(TRUNCATIONS)}, got {truncation!r}"
                )
            truncation = TRUNCATIONS[truncation]
        side = truncation if isinstance(truncation, str) else None  # only_first / only_second
        cut = True if side else as_bool("truncation", truncation, True)
        limit = self._max_length()
        if max_length is not None:
            check_max_length(max_length, 3, "the special tokens and one more")
            cut, limit = truncation is not False, min(limit, max_length)
        return {
            "top_k": top_k,
            "legacy": legacy,
            "function_to_apply": function_to_apply or self._default_function(),
            "truncation": cut,
            "side": side,
            "max_length": limit,
            # (tokenizer keywords too: without special tokens the input is the texts' tokens alone, segment
            # ids 0 then 1 as the fast tokenizer gives them; without token type ids every segment id is 0)
            "specials": as_bool("add_special_tokens", add_special_tokens, True),
            "types": as_bool("return_token_type_ids", return_token_type_ids, True),
        }

    def _merge_params(self, params: dict[str, Any]) -> dict[str, Any]:
        merged = super()._merge_params(params)
        if params.get("return_all_scores") is not None and "top_k" not in params and "top_k" in self._params:
            # transformers merges checked parameters: the call's return_all_scores sets top_k while the
            # pipeline's top_k keeps the sorted-list form.
            warnings.warn(RETURN_ALL_SCORES_DEPRECATED, UserWarning, stacklevel=4)  # pipe(...)'s caller
            every = as_bool("return_all_scores", merged.pop("return_all_scores"), False)
            merged["top_k"] = None if every else 1
        return merged

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
            if not isinstance(item.get("text"), str):  # (other keys, a label say, are left alone)
                raise ValueError(
                    'a text pair must be a dict {"text": str, "text_pair": str}, got keys '
                    + str(sorted(item))
                )
            # None is a single text, as transformers' tokenizer reads text_pair=None (or a JSON null).
            if not isinstance(item.get("text_pair", ""), (str, type(None))):
                raise TypeError(f"text_pair must be a str, got {type(item['text_pair']).__name__}")
            return item
        return super()._check_input(item)

    @classmethod
    def parse_line(cls, line: str) -> Any:
        # A line holding a JSON object with "text" is a (possibly paired) input; anything else is plain text.
        value = json_line(line, "{")
        if isinstance(value, dict) and "text" in value:
            # a line of a fine-tuning file reads as its input: its label (or id) is not the model's
            return {k: v for k, v in value.items() if k in ("text", "text_pair")}
        return line

    def _preprocess(self, item: Any, params: dict[str, Any]) -> list[Feature]:
        pair = isinstance(item, dict) and item.get("text_pair") is not None
        texts = (
            [item["text"], item["text_pair"]] if pair else [item["text"] if isinstance(item, dict) else item]
        )
        encoded = [ids for ids, _ in self._encode(texts)]
        specials = (2 + pair) if params["specials"] else 0
        room = params["max_length"] - specials
        if not params["truncation"] and sum(map(len, encoded)) > room:
            raise ValueError(
                f"an input of {sum(map(len, encoded)) + specials} tokens is longer than the model's "
                f"{params['max_length']}; pass truncation=True to cut it"
            )
        first, second = truncate_pair(
            encoded[0], encoded[1] if pair else None, room, params["side"] or "longest_first"
        )
        feature = self._build(first, second, special_tokens=params["specials"])
        if not feature.input_ids:
            raise ValueError("this input has no tokens, and add_special_tokens=False adds none")
        if not params["types"]:
            feature.token_type_ids = [0] * len(feature.input_ids)
        return [feature]

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
        id2label, top_k = self.config.id2label, params["top_k"]
        if params["legacy"] and top_k == 1:
            best = int(scores.argmax())
            return {"label": id2label[best], "score": float(scores[best])}
        ranked = [{"label": id2label[i], "score": float(s)} for i, s in enumerate(scores.tolist())]
        if params["legacy"]:  # return_all_scores=True: every label, in label order
            return ranked
        ranked.sort(key=lambda d: d["score"], reverse=True)
        return ranked if top_k is None else ranked[:top_k]

    def _format(self, inputs: Any, results: list[Any], single: bool, call_params: dict[str, Any]) -> Any:
        if not single:
            return results
        # transformers wraps a lone string's result in a list, but not a lone pair dict's, and only when the
        # call itself has no top_k: one given at construction does not count (its check sees the call alone).
        wrap = "top_k" not in call_params and isinstance(inputs, str)
        return [results[0]] if wrap else results[0]
