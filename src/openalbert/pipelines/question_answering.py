"""question-answering: extract the answer span to a question from a context, as transformers' (v4)
QuestionAnsweringPipeline does with a fast tokenizer. transformers v5 dropped this pipeline; we keep it.

A context longer than the model's window is cut into overlapping windows of `max_seq_len` tokens
(question included) that overlap by `doc_stride` tokens. In each window the start and end logits of the
context tokens are turned into probabilities; a span scores start * end, spans longer than
`max_answer_len` tokens are excluded, and the answer is widened to whole words of the context. The same
answer text found in several windows adds up its scores.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from openalbert.heads import AlbertForQuestionAnswering
from openalbert.pipelines.base import Feature, Pipeline, as_bool, is_int
from openalbert.tokenizer import stride_windows


class QuestionAnsweringPipeline(Pipeline):
    """`pipe(question=..., context=...)` -> `{score, start, end, answer}`; `top_k > 1` gives a list.

    `start`/`end` index characters of the context. Inputs: `question=` and `context=` (strings or
    lists), a dict `{"question", "context"}` or a list of such dicts. With `handle_impossible_answer`
    the empty answer (start = end = 0) competes with the spans, scored from the [CLS] token.
    """

    task = "question-answering"
    model_class = AlbertForQuestionAnswering
    head_description = "question-answering head (qa_outputs.*)"
    json_input = True

    def __call__(
        self,
        *args: Any,
        question: str | list[str] | None = None,
        context: str | list[str] | None = None,
        batch_size: int | None = None,
        **params: Any,
    ) -> Any:
        """Answer one question (or a list); see the class docstring for the accepted input forms, and
        `pipe(question, context)` with two strings, as transformers takes them."""
        if len(args) == 2 and all(isinstance(a, str) for a in args):
            args = ({"question": args[0], "context": args[1]},)
        if len(args) > 1:
            raise TypeError("pass one input (a dict, a list of dicts) or two strings: question, context")
        # transformers' older spellings: the input as X= or data=, top_k as topk=; padding changes nothing
        legacy = [params.pop(name) for name in ("X", "data") if name in params]
        if legacy and args:
            raise ValueError("pass the inputs once: positionally, or as X= / data=")
        args = args or tuple(legacy[:1])
        if "topk" in params:
            if "top_k" in params:
                raise ValueError("top_k is given twice (top_k= and its old name topk=)")
            params["top_k"] = params.pop("topk")
        params.pop("padding", None)
        inputs = args[0] if args else None
        if inputs is None:
            inputs = _pairs(question, context)
        elif question is not None or context is not None:
            raise ValueError("pass the inputs either positionally or as question=/context=, not both")
        return super().__call__(inputs, batch_size=batch_size, **params)

    def _check_params(
        self,
        top_k: int | None = None,
        doc_stride: int | None = None,
        max_answer_len: int | None = None,
        max_seq_len: int | None = None,
        max_question_len: int | None = None,
        handle_impossible_answer: bool = False,
        align_to_words: bool = True,
    ) -> dict[str, Any]:
        # None is each one's default, as in transformers
        top_k = 1 if top_k is None else top_k
        max_answer_len = 15 if max_answer_len is None else max_answer_len
        max_question_len = 64 if max_question_len is None else max_question_len
        for name, value in (
            ("top_k", top_k),
            ("max_answer_len", max_answer_len),
            ("max_question_len", max_question_len),
        ):
            if not is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        limit = self._max_length()
        max_seq_len = min(limit, 384) if max_seq_len is None else max_seq_len
        if not is_int(max_seq_len) or not 4 <= max_seq_len <= limit:
            raise ValueError(
                f"max_seq_len must be an integer in [4, {limit}] (the model's limit), got {max_seq_len!r}"
            )
        doc_stride = min(max_seq_len // 2, 128) if doc_stride is None else doc_stride
        if not is_int(doc_stride) or not 0 <= doc_stride <= max_seq_len:
            raise ValueError(
                f"doc_stride must be an integer in [0, max_seq_len={max_seq_len}], got {doc_stride!r}"
            )
        return {
            "top_k": top_k,
            "doc_stride": doc_stride,
            "max_answer_len": max_answer_len,
            "max_seq_len": max_seq_len,
            "max_question_len": max_question_len,
            "handle_impossible_answer": as_bool("handle_impossible_answer", handle_impossible_answer, False),
            "align_to_words": as_bool("align_to_words", align_to_words, True),
        }

    def _as_items(self, inputs: Any) -> tuple[list[Any], bool]:
        if isinstance(inputs, dict):
            return [inputs], True
        return super()._as_items(inputs)

    @staticmethod
    def create_sample(
        question: str | list[str], context: str | list[str]
    ) -> dict[str, str] | list[dict[str, str]]:
        """One input (or a list, for lists) of the pipeline: transformers' helper, which makes SquadExamples;
        here the dicts {"question", "context"} that the pipeline takes."""
        return _pairs(question, context)

    def _check_input(self, item: Any) -> dict[str, str]:
        if not isinstance(item, dict) and hasattr(item, "question_text") and hasattr(item, "context_text"):
            item = {
                "question": item.question_text,
                "context": item.context_text,
            }  # transformers' SquadExample
        if not isinstance(item, dict):
            raise TypeError(
                f'a question-answering input is a dict {{"question", "context"}}, got {type(item).__name__}'
            )
        for key in ("question", "context"):
            if key not in item:
                raise KeyError(
                    f'a question-answering input needs "question" and "context"; "{key}" is missing'
                )
            if not isinstance(item[key], str):
                raise TypeError(f'"{key}" must be a str, got {type(item[key]).__name__}')
            if not item[key].strip():
                raise ValueError(f'"{key}" is empty')
        return item

    @classmethod
    def parse_line(cls, line: str) -> Any:
        return json.loads(line)

    def _preprocess(self, item: dict[str, str], params: dict[str, Any]) -> list[Feature]:
        (question, _), (context, offsets) = self._encode([item["question"], item["context"]])
        # As transformers' slow path (and BERT's SQuAD script) does, so a long question leaves room for the
        # context; its fast path, which we follow otherwise, ignores max_question_len (see README).
        question = question[: params["max_question_len"]]
        budget = params["max_seq_len"] - len(question) - 3  # [CLS] question [SEP] context [SEP]
        if budget < 1:
            raise ValueError(
                f"the question is {len(question)} tokens long and leaves no room for the context within "
                f"max_seq_len={params['max_seq_len']}; shorten it or lower max_question_len"
            )
        stride = params["doc_stride"]
        if len(context) > budget and stride >= budget:
            raise ValueError(
                f"doc_stride ({stride}) must be smaller than the context room of each window ({budget} tokens "
                f"= max_seq_len {params['max_seq_len']} - question - 3); lower doc_stride"
            )
        words = self._word_ids(context, offsets, item["context"])
        features = []
        for lo, hi in stride_windows(len(context), budget, stride):
            features.append(
                self._build(
                    question,
                    context[lo:hi],
                    context_start=len(question) + 2,  # after [CLS] question [SEP]
                    offsets=offsets[lo:hi],
                    words=words[lo:hi],
                )
            )
        return features

    def _word_ids(self, ids: list[int], offsets: list[tuple[int, int]], text: str) -> list[int]:
        """Word index of each context token: a word starts at a '▁' piece and at a user-defined symbol, and
        a special or added token ([MASK] written in the text) is a word of its own.

        This reproduces the words of transformers' fast ALBERT tokenizer, which splits the text around
        the vocabulary's user-defined symbols ( ) " - . – £ € and its added tokens as well as at spaces.
        An unknown piece stands for characters of the text (l’Opéra: l <unk> oper a) and stays in its
        word, unless the text spells the unknown token itself.
        """
        tok = self.tokenizer
        symbols = self.__dict__.get("_symbols")
        if symbols is None:
            added = set(tok.all_special_ids) | set(tok.get_added_vocab().values())
            symbols = self._symbols = _user_defined_ids(tok) | added
        pieces = tok.convert_ids_to_tokens(ids)
        words, current, after_symbol = [], -1, False
        for token_id, piece, (start, end) in zip(ids, pieces, offsets):
            is_symbol = token_id in symbols
            if token_id == tok.unk_token_id and text[start:end] != tok.unk_token:
                is_symbol = False
            if current < 0 or piece.startswith("\u2581") or is_symbol or after_symbol:
                current += 1
            words.append(current)
            after_symbol = is_symbol
        return words

    def _forward(self, model: Any, batch: dict[str, torch.Tensor], features: list[Feature]) -> list[Any]:
        out = model(**batch, return_dict=True)
        start, end = out.start_logits.float().cpu(), out.end_logits.float().cpu()
        return [(start[i, : len(f.input_ids)], end[i, : len(f.input_ids)]) for i, f in enumerate(features)]

    def _postprocess(
        self, item: dict[str, str], features: list[Feature], outputs: list[Any], params: dict[str, Any]
    ) -> Any:
        context = item["context"]
        top_k, max_answer_len = params["top_k"], params["max_answer_len"]
        # More candidates than asked for: widening to words can make several spans one answer.
        candidates = top_k * 2 + 10 if params["align_to_words"] else top_k
        null_score = 1e6
        answers: list[dict[str, Any]] = []
        for feature, (start_logits, end_logits) in zip(features, outputs):
            first = feature.meta["context_start"]
            n_context = len(feature.meta["offsets"])
            # Tokens that may hold the answer: the context, and [CLS] (the "no answer" token).
            allowed = torch.zeros(len(feature.input_ids), dtype=torch.bool)
            allowed[0] = True
            allowed[first : first + n_context] = True
            start = _masked_softmax(start_logits, allowed)
            end = _masked_softmax(end_logits, allowed)
            null_score = min(null_score, float(start[0] * end[0]))
            start[0] = end[0] = 0.0
            scores = torch.triu(start[:, None] * end[None, :])  # (T, T): span score, end >= start
            scores = torch.tril(scores, max_answer_len - 1)  # at most max_answer_len tokens
            flat = scores.flatten()
            if candidates == 1:
                best = flat.argmax()[None]
            else:
                best = torch.sort(-flat, stable=True).indices[:candidates]
            for index in best.tolist():
                s, e = divmod(index, scores.shape[1])
                if not (allowed[s] and allowed[e]):
                    continue
                lo, hi = self._char_span(feature, s, e, params["align_to_words"])
                text = context[lo:hi]
                score = float(scores[s, e])
                same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
                if same is not None:
                    same["score"] += score
                else:
                    answers.append({"score": score, "start": lo, "end": hi, "answer": text})
        if params["handle_impossible_answer"]:
            answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        return answers[0] if len(answers) == 1 else answers

    def _char_span(self, feature: Feature, s: int, e: int, align_to_words: bool) -> tuple[int, int]:
        """Characters of the context covered by tokens s..e, widened to whole words when asked."""
        first = feature.meta["context_start"]
        offsets, words = feature.meta["offsets"], feature.meta["words"]
        n = len(offsets)

        def offset(i: int) -> tuple[int, int]:
            return offsets[i - first] if first <= i < first + n else (0, 0)

        if align_to_words and first <= s < first + n and first <= e < first + n:
            start_word, end_word = words[s - first], words[e - first]
            # A word is measured on the tokens of this window only (it may be cut at the window's edge).
            lo = next(offsets[k][0] for k in range(n) if words[k] == start_word)
            hi = next(offsets[k][1] for k in reversed(range(n)) if words[k] == end_word)
            return lo, hi
        return offset(s)[0], offset(e)[1]

    def _format(self, inputs: Any, results: list[Any], single: bool, call_params: dict[str, Any]) -> Any:
        return results[0] if single or len(results) == 1 else results


def _pairs(question: str | list[str] | None, context: str | list[str] | None) -> Any:
    """question=/context= keyword inputs -> one dict or a list of dicts."""
    if question is None or context is None:
        raise ValueError("question-answering needs both question= and context= (or a dict with both)")
    if isinstance(question, str) and isinstance(context, str):
        return {"question": question, "context": context}
    if isinstance(question, list) and isinstance(context, str):
        return [{"question": q, "context": context} for q in question]
    if isinstance(question, list) and isinstance(context, list):
        if len(question) != len(context):
            raise ValueError(
                f"got {len(question)} questions but {len(context)} contexts; pass one context per question"
            )
        return [{"question": q, "context": c} for q, c in zip(question, context)]
    raise TypeError(
        "question= and context= must be strings, a list of questions with one context, or two lists"
    )


def _masked_softmax(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    # -10000 rather than -inf, as transformers does: identical probabilities, and no NaN on an empty window.
    x = torch.where(allowed, logits, torch.tensor(-10000.0))
    x = (x - x.max()).exp()
    return x / x.sum()


def _user_defined_ids(tokenizer: Any) -> set[int]:
    """Ids of the vocabulary's user-defined symbols (always split out of words by SentencePiece)."""
    ids: set[int] = set()
    # transformers' slow tokenizer calls its SentencePiece processor sp_model, openalbert's _sp.
    sp = getattr(tokenizer, "sp_model", None) or getattr(tokenizer, "_sp", None)
    if sp is not None:
        probe = getattr(sp, "is_user_defined", None) or getattr(sp, "IsUserDefined", None)
        if probe is None:
            # Builds without is_user_defined: user-defined pieces are the other pieces scored exactly 0.
            def probe(i: int) -> bool:
                return sp.get_score(i) == 0 and not sp.is_control(i) and not sp.is_unknown(i)

        ids = {i for i in range(sp.get_piece_size()) if probe(i)}
    else:
        # transformers' fast tokenizer registers them as added tokens that are not special.
        for token_id, token in getattr(tokenizer, "added_tokens_decoder", {}).items():
            if not getattr(token, "special", True):
                ids.add(int(token_id))
    return ids
