"""fill-mask: the most likely tokens for each [MASK] in a text, as transformers' FillMaskPipeline gives them."""

from __future__ import annotations

import logging
from typing import Any

import torch

from openalbert.heads import AlbertForMaskedLM
from openalbert.pipelines.base import (
    Feature,
    Pipeline,
    PipelineException,
    as_bool,
    check_max_length,
    is_int,
    tokenizer_options,
    top_two_gap,
)

logger = logging.getLogger("openalbert")


class FillMaskPipeline(Pipeline):
    """`pipe(text, top_k=5, targets=None)` -> `[{score, token, token_str, sequence}, ...]` best first.

    A text with several masks gives one such list per mask. `targets` restricts the candidates to the
    given words (a word outside the vocabulary stands for its first token). A list of texts gives a list
    of results, except that a one-element list gives that element's result, as in transformers.
    """

    task = "fill-mask"
    model_class = AlbertForMaskedLM
    head_description = "masked-LM head (predictions.*)"

    def _check_params(
        self,
        top_k: int | None = None,
        targets: str | list[str] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        top_k = 5 if top_k is None else top_k  # (None is the default, as in transformers)
        if not is_int(top_k) or top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0, got {top_k!r}")
        if self.tokenizer.mask_token_id is None:
            raise ValueError("the tokenizer defines no mask token, so fill-mask cannot run")
        # transformers' tokenizer_kwargs: truncation and max_length cut a long text (padding changes nothing)
        tokenizer_kwargs = tokenizer_options(
            tokenizer_kwargs, "tokenizer_kwargs", ("truncation", "max_length", "padding")
        )
        limit, max_length = self._max_length(), tokenizer_kwargs.get("max_length")
        check_max_length(max_length, 3, "a mask and the special tokens")
        truncation = as_bool("truncation", tokenizer_kwargs.get("truncation", False), False)
        return {
            "top_k": top_k,
            "target_ids": None if targets is None else self._target_ids(targets),
            "cut_to": min(limit, max_length or limit) if truncation else None,
        }

    def _target_ids(self, targets: str | list[str]) -> list[int]:
        if isinstance(targets, (str, int, float)) and not isinstance(targets, bool):
            targets = [targets]  # type: ignore[list-item]
        # a number is its digits: `openalbert run --param targets=1990` reads 1990 as JSON
        targets = [str(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else t for t in targets]
        vocab = self.tokenizer.get_vocab()
        ids: list[int] = []
        for target in targets:
            if target in vocab:
                ids.append(vocab[target])
                continue
            # A word that is not a vocabulary entry stands for its first token (transformers does the same).
            pieces = self.tokenizer(target, add_special_tokens=False)["input_ids"]
            if not pieces:
                logger.warning("target %r is empty after tokenization; ignoring it", target)
                continue
            logger.warning(
                "target %r is not in the vocabulary; using its first token %r",
                target,
                self.tokenizer.convert_ids_to_tokens(pieces[0]),
            )
            ids.append(pieces[0])
        ids = sorted(set(ids))
        if not ids:
            raise ValueError(f"none of the targets {targets!r} maps to a token; pass at least one word")
        return ids

    def _preprocess(self, text: str, params: dict[str, Any]) -> list[Feature]:
        ((ids, _),) = self._encode([text])
        if params["cut_to"] is not None:
            ids = ids[: params["cut_to"] - 2]
        feature = self._build(ids)
        mask_id = self.tokenizer.mask_token_id
        positions = [i for i, t in enumerate(feature.input_ids) if t == mask_id]
        if not positions:
            shown = text if len(text) <= 80 else text[:77] + "..."
            reason = f"no {self.tokenizer.mask_token} in the input {shown!r}; fill-mask needs at least one"
            raise PipelineException(self.task, "albert", reason)
        feature.meta["positions"] = positions
        return [feature]

    def _forward(self, model: Any, batch: dict[str, torch.Tensor], features: list[Feature]) -> list[Any]:
        device = batch["input_ids"].device
        counts = [len(f.meta["positions"]) for f in features]
        if isinstance(model, torch.nn.Module):
            # The last layer runs at the masks alone (each row's list repeated to the longest one), and only
            # they go through the vocabulary projection: (B, R, H) -> (M, H) -> (M, V).
            width = max(counts)
            queries = torch.tensor(
                [
                    f.meta["positions"] + f.meta["positions"][:1] * (width - n)
                    for f, n in zip(features, counts)
                ],
                device=device,
            )  # (B, R)
            keep = torch.tensor([[j < n for j in range(width)] for n in counts], device=device)  # (B, R)
            hidden = model.albert(
                **batch, queries_at=queries, return_dict=True
            ).last_hidden_state  # (B, R, H)
            logits = model.predictions(hidden[keep])
        else:  # a TF or Flax model, or CUDA graphs: the whole head, then the masked rows
            rows = torch.cat([torch.full((n,), i) for i, n in enumerate(counts)]).to(device)
            cols = torch.tensor([p for f in features for p in f.meta["positions"]]).to(device)
            logits = model(**batch, return_dict=True).logits[rows, cols]
        return list(logits.float().cpu().split(counts))

    def _margin(self, features: list[Feature], outputs: list[Any], params: dict[str, Any]) -> float:
        (logits,) = outputs  # (masks, V): the top-1 token of each mask among the candidates
        target_ids = params["target_ids"]
        return top_two_gap(logits if target_ids is None else logits[:, target_ids])

    def _postprocess(
        self, text: str, features: list[Feature], outputs: list[Any], params: dict[str, Any]
    ) -> Any:
        (feature,), (logits,) = features, outputs
        probs = logits.softmax(dim=-1)  # (M, V)
        target_ids = params["target_ids"]
        if target_ids is not None:
            probs = probs[:, target_ids]
        values, indices = probs.topk(min(params["top_k"], probs.shape[-1]), dim=-1)
        single = len(feature.meta["positions"]) == 1
        pad = self.tokenizer.pad_token_id
        result = []
        for position, row_values, row_indices in zip(feature.meta["positions"], values, indices):
            row = []
            for score, index in zip(row_values.tolist(), row_indices.tolist()):
                token = target_ids[index] if target_ids is not None else index
                ids = list(feature.input_ids)
                ids[position] = token
                # With several masks the others stay visible in `sequence`, so special tokens are kept.
                sequence = self.tokenizer.decode([t for t in ids if t != pad], skip_special_tokens=single)
                row.append(
                    {
                        "score": score,
                        "token": token,
                        "token_str": self.tokenizer.decode([token]),
                        "sequence": sequence,
                    }
                )
            result.append(row)
        return result[0] if single else result

    def _format(self, inputs: Any, results: list[Any], single: bool, call_params: dict[str, Any]) -> Any:
        return results[0] if single or len(results) == 1 else results
