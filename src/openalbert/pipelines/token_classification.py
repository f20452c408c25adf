"""token-classification (NER, tagging): a label per token, optionally grouped into entities with character
spans in the original text, as transformers' TokenClassificationPipeline gives them."""

from __future__ import annotations

from typing import Any

import torch

from openalbert.heads import AlbertForTokenClassification
from openalbert.pipelines.base import Feature, Pipeline, tokens_to_string, top_two_gap

STRATEGIES = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    """`pipe(text, aggregation_strategy="none")` -> a list of entities, labels in `ignore_labels` dropped.

    "none": one `{entity, score, index, word, start, end}` per token. "simple": adjacent tokens with the
    same tag (B-/I- prefixes understood) merge into `{entity_group, score, word, start, end}`, score
    the mean. "first" / "average" / "max" first settle one label per word (the first token's, the
    averaged scores', the most confident token's), then group as "simple". ALBERT's SentencePiece has
    no word markers inside a word, so a token continues a word when no space precedes it in the text.
    """

    task = "token-classification"
    model_class = AlbertForTokenClassification
    head_description = "token-classification head (classifier.*)"

    def _check_params(
        self, aggregation_strategy: str | None = None, ignore_labels: list[str] | None = None
    ) -> dict[str, Any]:
        strategy = str(getattr(aggregation_strategy, "value", aggregation_strategy or "none")).lower()
        if strategy not in STRATEGIES:
            raise ValueError(
                f"aggregation_strategy must be one of {STRATEGIES}, got {aggregation_strategy!r}"
            )
        return {
            "strategy": strategy,
            "ignore_labels": ["O"] if ignore_labels is None else list(ignore_labels),
        }

    def _preprocess(self, text: str, params: dict[str, Any]) -> list[Feature]:
        ((ids, offsets),) = self._encode([text])
        keep = self._max_length() - 2
        feature = self._build(ids[:keep])
        feature.meta["offsets"] = [(0, 0), *offsets[:keep], (0, 0)]
        return [feature]

    def _forward(self, model: Any, batch: dict[str, torch.Tensor], features: list[Feature]) -> list[Any]:
        logits = model(**batch, return_dict=True).logits.float().cpu()  # (B, T, L)
        return [logits[i, : len(f.input_ids)] for i, f in enumerate(features)]

    def _margin(self, features: list[Feature], outputs: list[Any], params: dict[str, Any]) -> float:
        (logits,) = outputs  # (T, labels): every token's label, [CLS] and [SEP] aside
        return top_two_gap(logits[1:-1])

    def _postprocess(
        self, text: str, features: list[Feature], outputs: list[Any], params: dict[str, Any]
    ) -> Any:
        (feature,), (logits,) = features, outputs
        scores = logits.softmax(-1)
        tokens = self._tokens(text, feature, scores)
        strategy = params["strategy"]
        if strategy in ("none", "simple"):
            entities = [self._token_entity(t) for t in tokens]
        else:
            entities = [self._word_entity(word, strategy) for word in _words(tokens)]
        if strategy != "none":
            entities = self._group(entities)
        ignore = params["ignore_labels"]
        return [e for e in entities if e.get("entity", e.get("entity_group")) not in ignore]

    def _tokens(self, text: str, feature: Feature, scores: torch.Tensor) -> list[dict[str, Any]]:
        """One record per non-special token: its piece, scores, span and whether it continues a word."""
        special = {self.tokenizer.cls_token_id, self.tokenizer.sep_token_id}
        unk = self.tokenizer.unk_token_id
        out = []
        last = len(feature.input_ids) - 1
        for idx, (token_id, (start, end)) in enumerate(zip(feature.input_ids, feature.meta["offsets"])):
            if (idx == 0 or idx == last) and token_id in special:
                continue
            word = self.tokenizer.convert_ids_to_tokens(token_id)
            continues = start > 0 and " " not in text[start - 1 : start + 1]
            if token_id == unk:
                # An unknown piece shows the text it stands for, and always starts a word.
                word, continues = text[start:end], False
            out.append(
                {
                    "word": word,
                    "scores": scores[idx],
                    "start": start,
                    "end": end,
                    "index": idx,
                    "continues": continues,
                }
            )
        return out

    def _token_entity(self, token: dict[str, Any]) -> dict[str, Any]:
        best = int(token["scores"].argmax())
        return {
            "entity": self.config.id2label[best],
            "score": float(token["scores"][best]),
            "index": token["index"],
            "word": token["word"],
            "start": token["start"],
            "end": token["end"],
        }

    def _word_entity(self, word: list[dict[str, Any]], strategy: str) -> dict[str, Any]:
        if strategy == "first":
            scores = word[0]["scores"]
        elif strategy == "max":
            scores = max(word, key=lambda t: float(t["scores"].max()))["scores"]
        else:
            scores = torch.stack([t["scores"] for t in word]).mean(0)
        best = int(scores.argmax())
        return {
            "entity": self.config.id2label[best],
            "score": float(scores[best]),
            "word": tokens_to_string([t["word"] for t in word]),
            "start": word[0]["start"],
            "end": word[-1]["end"],
        }

    def _group(self, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Merge runs of the same tag; a B- tag always starts a new group."""
        groups: list[list[dict[str, Any]]] = []
        for entity in entities:
            begins, tag = _split_tag(entity["entity"])
            if groups and not begins and tag == _split_tag(groups[-1][-1]["entity"])[1]:
                groups[-1].append(entity)
            else:
                groups.append([entity])
        return [
            {
                "entity_group": _split_tag(group[0]["entity"])[1],
                "score": sum(e["score"] for e in group) / len(group),
                "word": tokens_to_string([e["word"] for e in group]),
                "start": group[0]["start"],
                "end": group[-1]["end"],
            }
            for group in groups
        ]


def _split_tag(label: str) -> tuple[bool, str]:
    """'B-PER' -> (True, 'PER'); 'I-PER' and a bare 'PER' -> (False, 'PER')."""
    if label.startswith(("B-", "I-")):
        return label.startswith("B-"), label[2:]
    return False, label


def _words(tokens: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    words: list[list[dict[str, Any]]] = []
    for token in tokens:
        if words and token["continues"]:
            words[-1].append(token)
        else:
            words.append([token])
    return words
