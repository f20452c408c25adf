"""token-classification (NER, tagging): a label per token, optionally grouped into entities with character
spans in the original text, as transformers' TokenClassificationPipeline gives them."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch

from openalbert.heads import AlbertForTokenClassification
from openalbert.pipelines.base import (
    Feature,
    Pipeline,
    as_bool,
    is_int,
    json_line,
    tokens_to_string,
    top_two_gap,
)
from openalbert.tokenizer import stride_windows

logger = logging.getLogger(__name__)

STRATEGIES = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    """`pipe(text, aggregation_strategy="none")` -> a list of entities, labels in `ignore_labels` dropped.

    "none": one `{entity, score, index, word, start, end}` per token. "simple": adjacent tokens with the
    same tag (B-/I- prefixes understood) merge into `{entity_group, score, word, start, end}`, score
    the mean. "first" / "average" / "max" first settle one label per word (the first token's, the
    averaged scores', the most confident token's), then group as "simple". ALBERT's SentencePiece has
    no word markers inside a word, so a token continues a word when no space precedes it in the text.

    As in transformers: `stride` tags a text longer than the model takes in overlapping windows (where
    entities overlap, the longest is kept); `is_split_into_words` takes a list of words, joined with
    `delimiter` for the spans; `grouped_entities` / `ignore_subwords` are read as the strategy they meant;
    `offset_mapping` gives a text's character spans (for each input of a batch, a list of (start, end) per
    token of `tokenizer(text)`, special tokens included) in place of the tokenizer's.
    """

    task = "token-classification"
    model_class = AlbertForTokenClassification
    head_description = "token-classification head (classifier.*)"

    def _check_params(
        self,
        aggregation_strategy: str | None = None,
        ignore_labels: list[str] | None = None,
        stride: int | None = None,
        is_split_into_words: bool | None = None,
        delimiter: str | None = None,
        grouped_entities: bool | None = None,
        ignore_subwords: bool | None = None,
        offset_mapping: list[tuple[int, int]] | None = None,
    ) -> dict[str, Any]:
        if grouped_entities is not None or ignore_subwords is not None:  # transformers' older options
            grouped, subwords = (
                as_bool("grouped_entities", grouped_entities, False),
                as_bool("ignore_subwords", ignore_subwords, False),
            )
            aggregation_strategy = ("first" if subwords else "simple") if grouped else "none"
            warnings.warn(
                f'grouped_entities and ignore_subwords are deprecated; read as aggregation_strategy="{aggregation_strategy}"',
                FutureWarning,
                stacklevel=4,
            )
        strategy = str(getattr(aggregation_strategy, "value", aggregation_strategy or "none")).lower()
        if strategy not in STRATEGIES:
            raise ValueError(
                f"aggregation_strategy must be one of {STRATEGIES}, got {aggregation_strategy!r}"
            )
        if stride is not None:
            room = self._max_length() - 2
            if not is_int(stride) or not 0 <= stride < room:
                raise ValueError(
                    f"stride must be an int in [0, {room}) (the tokens of a window), got {stride!r}"
                )
            # (as in transformers: an explicit "none" is refused; left out, every window's tokens are given,
            # overlapping ones merged)
            if aggregation_strategy is not None and strategy == "none":
                raise ValueError(
                    'stride tags a long text in windows whose entities are merged; that needs an aggregation_strategy other than "none"'
                )
        split = as_bool("is_split_into_words", is_split_into_words, False)
        if delimiter is not None and not isinstance(delimiter, str):
            raise TypeError(f"delimiter must be a str, got {type(delimiter).__name__}")
        if isinstance(ignore_labels, str):  # one label (`--param ignore_labels=PER`), not its letters
            ignore_labels = [ignore_labels]
        if offset_mapping is not None and not _is_spans(offset_mapping):
            raise TypeError(
                f"offset_mapping must be a list of (start, end) character spans, got {offset_mapping!r}"
            )
        if offset_mapping is not None and split:
            raise ValueError(
                "offset_mapping gives a text's spans; a list of words (is_split_into_words) has its own"
            )
        return {
            "strategy": strategy,
            "ignore_labels": ["O"] if ignore_labels is None else list(ignore_labels),
            "stride": stride,
            "split": split,
            "delimiter": " " if delimiter is None else delimiter,
            "offsets": None if offset_mapping is None else [tuple(span) for span in offset_mapping],
        }

    def __call__(self, inputs: Any, *, batch_size: int | None = None, **params: Any) -> Any:
        split = self._merge_params(params).get("is_split_into_words")
        spans = params.get("offset_mapping")
        if spans and isinstance(inputs, (list, tuple)) and not as_bool("is_split_into_words", split, False):
            # a batch: one list of spans per input, each input run with its own
            spans = [spans] if _is_spans(spans) else spans
            if len(spans) != len(inputs):
                raise ValueError(
                    f"offset_mapping holds the spans of {len(spans)} inputs for {len(inputs)} inputs"
                )
            return [
                self(x, batch_size=batch_size, **{**params, "offset_mapping": s})
                for x, s in zip(inputs, spans)
            ]
        if _is_words(inputs) and inputs and as_bool("is_split_into_words", split, False):
            # one text's words; transformers answers it as a batch of one
            return super().__call__([list(inputs)], batch_size=batch_size, **params)
        return super().__call__(inputs, batch_size=batch_size, **params)

    def _check_input(self, item: Any) -> Any:
        if _is_words(item):
            return list(item)  # words (is_split_into_words)
        return super()._check_input(item)

    @classmethod
    def parse_line(cls, line: str) -> Any:
        # A line holding a JSON array of strings is a list of words (for is_split_into_words); anything else
        # is plain text.
        value = json_line(line, "[")
        return value if isinstance(value, list) and all(isinstance(w, str) for w in value) else line

    def _preprocess(self, item: str | list[str], params: dict[str, Any]) -> list[Feature]:
        if params["split"] != isinstance(item, list):
            raise TypeError(
                "with is_split_into_words an input is a list of words (in openalbert run: a JSON array a line)"
                if params["split"]
                else "a list of words needs is_split_into_words=True"
            )
        if params["split"]:
            text, ids, offsets = self._encode_words(item, params["delimiter"])
        else:
            text, ((ids, offsets),) = item, self._encode([item])
        room = self._max_length() - 2
        if params["offsets"] is not None:
            given = params["offsets"][1:-1]  # (without the special tokens' spans)
            if len(given) != len(ids) and not (params["stride"] is None and len(given) == room < len(ids)):
                raise ValueError(
                    f"offset_mapping holds {len(params['offsets'])} spans; tokenizer(text) gives {len(ids) + 2} "
                    "tokens for this input, [CLS] and [SEP] included"
                )
            offsets = given
        if params["stride"] is None and len(ids) > room:
            logger.warning(
                "a text of %d tokens is cut to the model's %d; pass stride= to tag all of it in windows",
                len(ids),
                room,
            )
        windows = (
            stride_windows(len(ids), room, params["stride"]) if params["stride"] is not None else [(0, room)]
        )
        features = []
        for lo, hi in windows:
            feature = self._build(ids[lo:hi], text=text)
            feature.meta["offsets"] = [(0, 0), *offsets[lo:hi], (0, 0)]
            features.append(feature)
        return features

    def _encode_words(self, words: list[str], delimiter: str) -> tuple[str, list[int], list[tuple[int, int]]]:
        """The text the words make joined by `delimiter`, and its tokens with spans in that text."""
        enc = self.tokenizer(  # verbose=False: as _encode, a long input is the pipeline's to cut or window
            words,
            is_split_into_words=True,
            add_special_tokens=False,
            return_offsets_mapping=True,
            verbose=False,
        )
        starts, at = [], 0
        for word in words:
            starts.append(at)
            at += len(word) + len(delimiter)
        offsets = [(starts[w] + a, starts[w] + b) for w, (a, b) in zip(enc.word_ids(), enc["offset_mapping"])]
        return delimiter.join(words), list(enc["input_ids"]), offsets

    def _forward(self, model: Any, batch: dict[str, torch.Tensor], features: list[Feature]) -> list[Any]:
        logits = model(**batch, return_dict=True).logits.float().cpu()  # (B, T, L)
        return [logits[i, : len(f.input_ids)] for i, f in enumerate(features)]

    def _margin(self, features: list[Feature], outputs: list[Any], params: dict[str, Any]) -> float:
        # (T, labels) per window: every token's label, [CLS] and [SEP] aside
        return min(top_two_gap(logits[1:-1]) for logits in outputs)

    def _postprocess(
        self, item: str | list[str], features: list[Feature], outputs: list[Any], params: dict[str, Any]
    ) -> Any:
        strategy, ignore = params["strategy"], params["ignore_labels"]
        found = []
        for feature, logits in zip(features, outputs):  # one window, or several with stride
            tokens = self._tokens(feature.meta["text"], feature, logits.softmax(-1))
            if strategy in ("none", "simple"):
                entities = [self._token_entity(t) for t in tokens]
            else:
                entities = [self._word_entity(word, strategy) for word in _words(tokens)]
            if strategy != "none":
                entities = self._group(entities)
            found += [e for e in entities if e.get("entity", e.get("entity_group")) not in ignore]
        return _longest_of_overlapping(found) if len(features) > 1 else found

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


def _is_spans(value: Any) -> bool:
    """Whether `value` is one input's character spans: a list of (start, end) pairs of ints."""
    return isinstance(value, (list, tuple)) and all(
        isinstance(span, (list, tuple)) and len(span) == 2 and all(is_int(i) for i in span) for span in value
    )


def _is_words(item: Any) -> bool:
    """Whether an input is a list of words (is_split_into_words) rather than a text or a batch of texts."""
    return isinstance(item, (list, tuple)) and all(isinstance(w, str) for w in item)


def _longest_of_overlapping(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entities of overlapping windows, by start: of those that overlap, the longest (then the likelier)."""
    kept: list[dict[str, Any]] = []
    for entity in sorted(entities, key=lambda e: e["start"]):
        last = kept[-1] if kept else None
        if last is not None and last["start"] <= entity["start"] < last["end"]:
            longer = entity["end"] - entity["start"] - (last["end"] - last["start"])
            if longer > 0 or (longer == 0 and entity["score"] > last["score"]):
                kept[-1] = entity
        else:
            kept.append(entity)
    return kept


def _words(tokens: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    words: list[list[dict[str, Any]]] = []
    for token in tokens:
        if words and token["continues"]:
            words[-1].append(token)
        else:
            words.append([token])
    return words
