"""feature-extraction: the encoder's hidden states for a text, per token or pooled into one vector."""

from __future__ import annotations

from typing import Any

import torch

from openalbert.modeling import AlbertModel
from openalbert.pipelines.base import Feature, Pipeline, as_bool, check_max_length, tokenizer_options

POOLINGS = (None, "cls", "mean", "pooler")
# transformers hands truncation= to its tokenizer, which also takes a strategy name; on one text each of
# these either cuts it or does not.
TRUNCATION_STRATEGIES = {"longest_first": True, "only_first": True, "do_not_truncate": False}


class FeatureExtractionPipeline(Pipeline):
    """`pipe(text)` -> hidden states `[[[H floats] per token]]` (a batch of one, as transformers returns).

    `pooling="mean"` (over the tokens, special ones included), `"cls"` (the [CLS] hidden state) or
    `"pooler"` (ALBERT's tanh pooler over [CLS], as the classification heads see it) gives one vector of
    H floats instead. `return_tensors=True` gives torch tensors (not in `openalbert run`, which writes
    JSON); `truncation=False` raises on texts longer than the model takes instead of cutting them.
    """

    task = "feature-extraction"
    model_class = AlbertModel
    # Masked-LM, token-classification and QA checkpoints carry no pooler; only pooling="pooler" needs it.
    optional_weights = ("pooler.",)
    head_description = "encoder"

    def _check_params(
        self,
        pooling: str | None = None,
        truncation: bool | str | None = None,
        return_tensors: bool = False,
        tokenize_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if pooling == "pooler":
            missing = getattr(self.model, "missing_weights", [])
            no_pooler = isinstance(self.model, AlbertModel) and self.model.pooler is None
            if no_pooler or any(k.startswith("pooler.") for k in missing):
                raise ValueError(
                    "this checkpoint has no trained pooler (pooler.* weights); use pooling='cls' or 'mean'"
                )
        # tokenize_kwargs: what transformers hands its tokenizer; truncation, max_length (cut shorter),
        # add_special_tokens (False: the text's own tokens, no [CLS] and [SEP]) are taken; padding and
        # return_token_type_ids / return_attention_mask change nothing for one text of one segment.
        allowed = (
            "truncation",
            "max_length",
            "add_special_tokens",
            "padding",
            "return_token_type_ids",
            "return_attention_mask",
        )
        tokenize_kwargs = tokenizer_options(tokenize_kwargs, "tokenize_kwargs", allowed)
        if "truncation" in tokenize_kwargs:
            if truncation is not None:
                raise ValueError("truncation given twice: as a parameter and in tokenize_kwargs")
            truncation = tokenize_kwargs["truncation"]
        if isinstance(truncation, str) and truncation in TRUNCATION_STRATEGIES:
            truncation = TRUNCATION_STRATEGIES[truncation]
        limit, max_length = self._max_length(), tokenize_kwargs.get("max_length")
        if max_length is not None:
            check_max_length(max_length, 2, "the special tokens")
            limit = min(limit, max_length)
        return {
            "pooling": pooling,
            "truncation": as_bool("truncation", truncation, True),
            "max_length": limit,
            "return_tensors": as_bool("return_tensors", return_tensors, False),
            "specials": as_bool("add_special_tokens", tokenize_kwargs.get("add_special_tokens", True), True),
        }

    def _preprocess(self, text: str, params: dict[str, Any]) -> list[Feature]:
        ((ids, _),) = self._encode([text])
        specials = params["specials"]
        if params["truncation"]:
            ids = ids[: params["max_length"] - 2 * specials]
        if not specials:
            if not ids:
                raise ValueError(
                    f"{text!r} holds no tokens, and add_special_tokens=False leaves nothing to run"
                )
            return [Feature(ids, [0] * len(ids), {})]
        return [self._build(ids)]

    def _forward(self, model: Any, batch: dict[str, torch.Tensor], features: list[Feature]) -> list[Any]:
        out = model(**batch, return_dict=True)
        hidden = out.last_hidden_state.float().cpu()  # (B, T, H)
        pooled = out.pooler_output.float().cpu() if out.pooler_output is not None else None
        return [
            (hidden[i, : len(f.input_ids)], None if pooled is None else pooled[i])
            for i, f in enumerate(features)
        ]

    def _postprocess(
        self, text: str, features: list[Feature], outputs: list[Any], params: dict[str, Any]
    ) -> Any:
        ((hidden, pooled),) = outputs
        pooling = params["pooling"]
        if pooling is None:
            value = hidden[None]  # (1, T, H), the batch-of-one layout transformers returns
        elif pooling == "cls":
            value = hidden[0]
        elif pooling == "mean":
            value = hidden.mean(0)
        else:
            value = pooled
        return value if params["return_tensors"] else value.tolist()
