"""Fine-tuning data: table / CoNLL / SQuAD / multiple-choice readers, their errors, and the features built
from them with the genuine ALBERT vocabulary (transformers' tokenizer as the oracle for truncation and
question-answering windows)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.conftest import spiece_or_skip

from openalbert.finetuning import data as D


@pytest.fixture(scope="module")
def tokenizer():
    from openalbert.tokenizer import AlbertTokenizer

    return AlbertTokenizer.from_pretrained(spiece_or_skip().parent)


@pytest.fixture(scope="module")
def hf_tokenizer():
    transformers = pytest.importorskip("transformers")
    return transformers.AlbertTokenizerFast(vocab_file=str(spiece_or_skip()))


@pytest.fixture(scope="module")
def hf_slow_tokenizer():
    # The pipelines cut pairs as transformers' Python tokenizer does (the Rust one splits ties differently).
    transformers = pytest.importorskip("transformers")
    return transformers.AlbertTokenizer(vocab_file=str(spiece_or_skip()))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---- tables and text classification ---------------------------------------------------------------------


def test_tables_in_every_format_give_the_same_examples(tmp_path):
    pd = pytest.importorskip("pandas")
    rows = [{"sentence1": "A man, a plan.", "sentence2": 'He said "no"', "label": "entailment"},
            {"sentence1": "NA", "sentence2": "null", "label": "neutral"}]  # fmt: skip
    frame = pd.DataFrame(rows)
    frame.to_csv(tmp_path / "d.csv", index=False)
    write(tmp_path / "d.tsv", "sentence1\tsentence2\tlabel\n" + "".join(
        f"{r['sentence1']}\t{r['sentence2']}\t{r['label']}\n" for r in rows))  # fmt: skip
    write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n\n" for r in rows))
    paths = [tmp_path / "d.csv", tmp_path / "d.tsv", tmp_path / "d.jsonl"]
    if pytest.importorskip("pyarrow", reason="pyarrow is not installed"):
        frame.to_parquet(tmp_path / "d.parquet")
        paths.append(tmp_path / "d.parquet")
    for path in paths:
        data = D.read_text_classification(path)
        assert data.columns == ("sentence1", "sentence2", "label"), path
        assert data.texts == ["A man, a plan.", "NA"], path  # "NA" is text, not a missing value
        assert data.pairs == ['He said "no"', "null"], path
        assert data.labels == ["entailment", "neutral"] and not data.is_float, path
    assert D.read_text_classification(tmp_path / "d.jsonl").where(1) == f"{tmp_path / 'd.jsonl'}, line 3"


def test_both_texts_of_a_known_pair_layout_are_read(tmp_path):
    # QNLI (question, sentence) and BoolQ (question, passage): before, one of the two texts was left out.
    for first, second in (("question", "sentence"), ("question", "passage"), ("premise", "hypothesis")):
        path = write(tmp_path / f"{second}.csv", f"idx,{second},{first},label\n0,the text,the question,1\n")
        data = D.read_text_classification(path)
        assert data.columns == (first, second, "label") and (data.texts, data.pairs) == (
            ["the question"],
            ["the text"],
        ), (first, second)
    single = D.read_text_classification(write(tmp_path / "one.csv", "sentence,label\nhello,1\n"))
    assert single.columns == ("sentence", None, "label")


def test_label_types_and_label_maps(tmp_path):
    ints = D.read_text_classification(write(tmp_path / "i.csv", "text,label\na,1\nb,0\nc,10\nd,2\n"))
    assert not ints.is_float and ints.labels == ["1", "0", "10", "2"]
    assert D.build_label_map(ints.labels) == {"0": 0, "1": 1, "2": 2, "10": 3}  # numeric order
    floats = D.read_text_classification(write(tmp_path / "f.csv", "text,label\na,0.5\nb,4.0\n"))
    assert floats.is_float and floats.labels == [0.5, 4.0]
    names = D.build_label_map(["pos", "neg", "pos"])
    assert names == {"neg": 0, "pos": 1}
    with pytest.raises(
        D.DataError, match=r"v\.csv, line 3: label 'maybe' does not occur in the training data"
    ):
        v = D.read_text_classification(write(tmp_path / "v.csv", "text,label\nx,pos\ny,maybe\n"))
        D.check_labels(v.labels, names, v.where)


def test_bad_tables_are_named_errors(tmp_path):
    with pytest.raises(D.DataError, match=r"e\.csv is empty"):
        D.read_text_classification(write(tmp_path / "e.csv", ""))
    with pytest.raises(D.DataError, match=r"h\.csv holds no examples"):
        D.read_text_classification(write(tmp_path / "h.csv", "text,label\n"))
    with pytest.raises(
        D.DataError, match=r"n\.csv: no label column 'label'; the columns are \['text', 'y'\]"
    ):
        D.read_text_classification(write(tmp_path / "n.csv", "text,y\na,1\n"))
    with pytest.raises(D.DataError, match=r"m\.csv, line 3: the label \('label'\) is missing"):
        D.read_text_classification(write(tmp_path / "m.csv", "text,label\na,1\nb,\n"))
    with pytest.raises(
        D.DataError, match=r"r\.csv, line 3: the label \('label'\) is inf; a regression target"
    ):
        D.read_text_classification(write(tmp_path / "r.csv", "text,label\na,0.5\nb,inf\n"))
    with pytest.raises(D.DataError, match=r"t\.csv, line 2: the text \('text'\) is missing"):
        D.read_text_classification(write(tmp_path / "t.csv", "text,label\n,1\n"))
    with pytest.raises(D.DataError, match=r"j\.jsonl, line 2: not valid JSON"):
        D.read_text_classification(write(tmp_path / "j.jsonl", '{"text": "a", "label": 1}\n{"text": "b",\n'))
    with pytest.raises(D.DataError, match="no text column found"):
        D.read_text_classification(write(tmp_path / "x.csv", "body,label\na,1\n"))
    with pytest.raises(D.DataError, match="unknown table format"):
        D.read_text_classification(write(tmp_path / "x.xlsx", "a"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.read_text_classification(tmp_path / "absent.csv")


def test_classification_features_truncate_like_transformers(tmp_path, tokenizer, hf_slow_tokenizer):
    texts = ["The quick brown fox jumps over the lazy dog again and again.", "Short one."]
    pairs = ["A second sentence that is also fairly long, with commas, 1,000 of them.", "Tiny."]
    data = D.ClassificationData(tmp_path, texts, pairs, ["a", "b"], False, str)
    for max_length in (12, 20, 64):
        features = D.classification_features(data, tokenizer, {"a": 0, "b": 1}, max_length)
        expected = hf_slow_tokenizer(texts, pairs, truncation=True, max_length=max_length)
        assert [f["input_ids"] for f in features] == expected["input_ids"]
        assert [f["token_type_ids"] for f in features] == expected["token_type_ids"]
        assert [f["labels"] for f in features] == [0, 1]


# ---- token classification ---------------------------------------------------------------------------------


def test_conll_and_jsonl_token_files(tmp_path):
    conll = write(tmp_path / "a.conll",
                  "-DOCSTART-\tO\n\nEmpire\tB-facility\nState\tI-facility\n\t\n\nNA\tO\nnull\tB-x\n")  # fmt: skip
    s = D.read_conll(conll)
    assert s.words == [["Empire", "State"], ["NA", "null"]]
    assert s.tags == [["B-facility", "I-facility"], ["O", "B-x"]]
    assert s.lines == [3, 7] and s.where(1).endswith("a.conll, line 7")
    spaced = D.read_conll(write(tmp_path / "b.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"))
    assert spaced.words == [["EU", "rejects"]] and spaced.tags == [["B-ORG", "O"]]
    # a break line of spaces (or of tabs) in a file of that separator: the whole file was refused
    for sep in (" ", "\t"):
        blank = sep * 3
        text = f"EU{sep}B-ORG\nrejects{sep}O\n{blank}\nIt{sep}O\n{blank}\n"
        broken = D.read_conll(write(tmp_path / "g.conll", text))
        assert broken.words == [["EU", "rejects"], ["It"]] and broken.lines == [1, 4]
    jsonl = D.read_token_classification(
        write(tmp_path / "c.jsonl", '{"tokens": ["Hi", "Bob"], "ner_tags": ["O", "B-PER"]}\n')
    )
    assert jsonl.words == [["Hi", "Bob"]] and jsonl.tags == [["O", "B-PER"]]
    assert D.tag_map(s) == {"O": 0, "B-facility": 1, "I-facility": 2, "B-x": 3}
    with pytest.raises(D.DataError, match=r"d\.conll, line 2: expected a token and a tag"):
        D.read_conll(write(tmp_path / "d.conll", "a\tO\nb\t\n"))
    with pytest.raises(D.DataError, match=r"e\.jsonl, line 1: 2 tokens but 1 tags"):
        D.read_token_classification(write(tmp_path / "e.jsonl", '{"tokens": ["a", "b"], "tags": ["O"]}\n'))
    with pytest.raises(D.DataError, match=r"f\.conll is empty"):
        D.read_conll(write(tmp_path / "f.conll", ""))
    with pytest.raises(D.DataError, match=r"a\.conll, line 7: tag 'B-x' does not occur in the training data"):
        D.check_tags(s, {"O": 0, "B-facility": 1, "I-facility": 2})


def test_labels_align_to_first_piece_or_all_pieces(tmp_path, tokenizer):
    words = ["Empire", "State", "Buildingxyz", "is", "tall"]
    tags = ["B-fac", "I-fac", "I-fac", "O", "O"]
    sentences = D.TaggedSentences(tmp_path, [words], [tags], [1])
    label2id = {"O": 0, "B-fac": 1, "I-fac": 2}
    pieces = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
    assert len(pieces[2]) > 1  # the made-up word splits into several pieces
    first = D.token_features(sentences, tokenizer, label2id, 64)
    feature = first.features[0]
    assert feature["input_ids"] == [tokenizer.cls_token_id, *sum(pieces, []), tokenizer.sep_token_id]
    expected = [-100]
    for piece, tag in zip(pieces, tags):
        expected += [label2id[tag]] + [-100] * (len(piece) - 1)
    assert feature["labels"] == [*expected, -100]
    starts = [1 + sum(len(p) for p in pieces[:i]) for i in range(len(words))]
    assert first.word_positions == [[(0, p) for p in starts]]
    every = D.token_features(sentences, tokenizer, label2id, 64, label_all_tokens=True).features[0]
    # Every piece carries its word's tag, a B- tag continuing as I-.
    expected = [-100]
    for piece, tag in zip(pieces, tags):
        rest = "I-fac" if tag == "B-fac" else tag
        expected += [label2id[tag]] + [label2id[rest]] * (len(piece) - 1)
    assert every["labels"] == [*expected, -100]
    # A sentence longer than max_length goes on in further inputs, each starting at a whole word; before,
    # the words past max_length were not trained on and were scored as "O".
    budget = 2 + max(len(p) for p in pieces)
    cut = D.token_features(sentences, tokenizer, label2id, budget)
    assert len(cut.features) > 1 and all(len(f["input_ids"]) <= budget for f in cut.features)
    assert [
        tokenizer.convert_ids_to_tokens(cut.features[f]["input_ids"][p]) for f, p in cut.word_positions[0]
    ] == [tokenizer.convert_ids_to_tokens(p[0]) for p in pieces]
    labels = [x for f in cut.features for x in f["labels"] if x != -100]
    assert (
        labels == [label2id[t] for t in tags] and cut.features[-1]["input_ids"][-1] == tokenizer.sep_token_id
    )
    # a word longer than a whole input keeps its first pieces
    tiny = D.token_features(sentences, tokenizer, label2id, 3)
    assert all(len(f["input_ids"]) == 3 for f in tiny.features) and len(tiny.features) == len(words)


# ---- question answering ------------------------------------------------------------------------------------

CONTEXT = (
    "Accipiter is a genus of birds of prey in the family Accipitridae. Some species are called sparrowhawks, "
    "but there are many sparrowhawks in other genera such as Tachyspiza. They hunt small birds in woodland, "
    "flying fast and low between the trees, and nest high in the canopy."
)


def squad_file(tmp_path: Path, qas: list[dict], name: str = "s.json") -> Path:
    data = {"version": "v2.0", "data": [{"title": "A", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]}
    return write(tmp_path / name, json.dumps(data, indent=1))


def test_squad_json_and_jsonl(tmp_path):
    at = CONTEXT.index("genus of birds")
    qas = [
        {
            "id": "1",
            "question": "What is Accipiter?",
            "answers": [{"text": "genus of birds", "answer_start": at}],
        },
        {"id": "2", "question": "What is Paris?", "answers": [], "is_impossible": True},
    ]
    examples = D.read_squad(squad_file(tmp_path, qas))
    assert [e.id for e in examples] == ["1", "2"]
    assert examples[0].answers == [("genus of birds", at)] and examples[1].is_impossible
    hf = {"id": "x", "question": "What?", "context": CONTEXT,
          "answers": {"text": ["Tachyspiza"], "answer_start": [CONTEXT.index("Tachyspiza")]}}  # fmt: skip
    lines = write(
        tmp_path / "q.jsonl", json.dumps(hf) + "\n" + json.dumps({**hf, "id": "y", "answers": []}) + "\n"
    )
    examples = D.read_squad(lines)
    assert examples[0].answers == [("Tachyspiza", CONTEXT.index("Tachyspiza"))] and examples[1].is_impossible


def test_records_in_json_arrays_json_lines_named_json_and_parquet(tmp_path):
    # What datasets' to_json (JSON lines, even in a .json file), pandas' to_json(orient="records") (an array)
    # and to_parquet write; before, each gave an error about something else.
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow", reason="pyarrow is not installed")
    hf = {"id": "x", "question": "What?", "context": CONTEXT,
          "answers": {"text": ["Tachyspiza"], "answer_start": [CONTEXT.index("Tachyspiza")]}}  # fmt: skip
    qa = [hf, {**hf, "id": "y", "answers": {"text": [], "answer_start": []}}]
    ner = [{"tokens": ["Hi", "Bob"], "ner_tags": [0, 1]}, {"tokens": ["Yes"], "ner_tags": [0]}]
    choice = [{"question": "Sky?", "choices": ["blue", "green"], "label": 0}]
    for name, rows in (("qa", qa), ("ner", ner), ("choice", choice)):
        write(tmp_path / f"{name}.array.json", json.dumps(rows, indent=1))
        write(tmp_path / f"{name}.lines.json", "".join(json.dumps(r) + "\n" for r in rows))
        pd.DataFrame(rows).to_parquet(tmp_path / f"{name}.parquet")
    for kind in ("array.json", "lines.json", "parquet"):
        examples = D.read_squad(tmp_path / f"qa.{kind}")
        assert [(e.id, e.answers) for e in examples] == [
            ("x", [("Tachyspiza", CONTEXT.index("Tachyspiza"))]),
            ("y", []),
        ], kind
        tagged = D.read_token_classification(tmp_path / f"ner.{kind}")
        assert tagged.words == [["Hi", "Bob"], ["Yes"]] and tagged.tags == [["0", "1"], ["0"]], kind
        assert [(c.choices, c.label) for c in D.read_multiple_choice(tmp_path / f"choice.{kind}")] == [
            (["blue", "green"], 0)
        ], kind
    with pytest.raises(D.DataError, match=r"b\.json \(row 1\): expected a JSON object, got list"):
        D.read_token_classification(write(tmp_path / "b.json", '[{"tokens": ["a"], "tags": ["O"]}, []]'))
    with pytest.raises(D.DataError, match=r"c\.json, line 2: not valid JSON"):
        D.read_squad(write(tmp_path / "c.json", '[{"id": 1},\n ]'))


def test_csv_cells_stay_the_text_they_are(tmp_path):
    # pandas' type inference read "008" as 8 and "1.50" as 1.5, so the text the model saw was not the file's.
    data = D.read_text_classification(write(tmp_path / "t.csv", "text,label\n008,a\n1.50,b\n1e3,a\n"))
    assert data.texts == ["008", "1.50", "1e3"] and data.labels == ["a", "b", "a"]
    pairs = D.read_text_classification(
        write(tmp_path / "p.tsv", "sentence1\tsentence2\tlabel\n0.10\t007\t1\n")
    )
    assert (pairs.texts, pairs.pairs, pairs.labels, pairs.is_float) == (["0.10"], ["007"], ["1"], False)
    # a label column of numbers with a decimal point or an exponent is still a regression target
    scores = D.read_text_classification(write(tmp_path / "s.csv", "text,label\na,3\nb,1e-1\nc,2.5\n"))
    assert scores.is_float and scores.labels == [3.0, 0.1, 2.5]


def test_malformed_squad_records_are_named(tmp_path):
    good = {"id": "1", "question": "What is Accipiter?", "answers": [{"text": "genus", "answer_start": 15}]}
    cases = [
        ({"id": "2", "question": "Q?", "answers": [{"text": "genus", "answer_start": 3}]},
         r"the answer 'genus' is not at answer_start 3"),
        ({"id": "2", "answers": [{"text": "genus", "answer_start": 15}]}, "'question' is missing"),
        ({"id": "2", "question": "Q?", "answers": [{"text": "genus", "answer_start": 9999}]},
         r"answer_start 9999 is outside the context"),
        ({"id": "2", "question": "Q?", "answers": [{"answer_start": 15}]}, r'an answer needs "text"'),
        ({"id": "2", "question": "Q?"}, r'no "answers"'),
        ({"id": "1", "question": "Q?", "answers": []}, r"question id '1' is used twice"),
        ({"id": "2", "question": "Q?", "is_impossible": True, "answers": [{"text": "genus", "answer_start": 15}]},
         "is_impossible is true but the question has answers"),
    ]  # fmt: skip
    for bad, message in cases:
        with pytest.raises(D.DataError, match=r"s\.json: data\[0\]\.paragraphs\[0\]\.qas\[1\]: " + message):
            D.read_squad(squad_file(tmp_path, [good, bad]))
    with pytest.raises(D.DataError, match=r"t\.json, line 2: not valid JSON"):
        D.read_squad(write(tmp_path / "t.json", '{"data":\n [,]}'))
    with pytest.raises(D.DataError, match='a JSON object with a "data" list'):
        D.read_squad(write(tmp_path / "u.json", '{"version": "v2.0"}'))
    with pytest.raises(D.DataError, match=r"w\.json holds no examples"):
        D.read_squad(write(tmp_path / "w.json", " []"))
    with pytest.raises(D.DataError, match=r"v\.jsonl, line 1: 'context' is missing"):
        D.read_squad(write(tmp_path / "v.jsonl", '{"id": "1", "question": "Q?", "answers": []}\n'))


def test_question_answering_windows_match_transformers(tmp_path, tokenizer, hf_tokenizer):
    at = CONTEXT.index("sparrowhawks in other genera")
    examples = [
        D.QAExample(
            "1", "Where are many sparrowhawks?", CONTEXT, [("sparrowhawks in other genera", at)], "x"
        ),
        D.QAExample("2", "What is Paris?", CONTEXT, [], "y"),
    ]
    max_length, stride = 32, 8
    features = D.qa_features(examples, tokenizer, max_length, stride)
    expected = hf_tokenizer([e.question for e in examples], [e.context for e in examples], truncation="only_second",
                            max_length=max_length, stride=stride, return_overflowing_tokens=True)  # fmt: skip
    assert [f["input_ids"] for f in features] == expected["input_ids"]
    assert [f["token_type_ids"] for f in features] == expected["token_type_ids"]
    windows = len(features) // 2
    answered = [f for f in features[:windows] if f["start_positions"]]
    assert 1 <= len(answered) < windows  # the answer lies in some windows, not all
    for f in answered:
        span = f["input_ids"][f["start_positions"] : f["end_positions"] + 1]
        assert tokenizer.decode(span) == "sparrowhawks in other genera"
    # Windows without the whole answer, and every window of the unanswerable question, point at [CLS].
    assert all(f["start_positions"] == f["end_positions"] == 0 for f in features[windows:])
    with pytest.raises(ValueError, match="doc_stride"):
        D.qa_features(examples, tokenizer, max_length, 30)
    # An answer no window holds whole (longer than the windows' overlap) is trained as unanswerable; before,
    # without a word. Here the windows hold 19 context tokens and overlap by 1.
    long = CONTEXT[at:]
    lost = [D.QAExample("3", "What else?", CONTEXT, [(long, at)], "train.json, line 3"), examples[1]]
    with pytest.warns(
        UserWarning, match=r"1 of 1 answerable questions .* \(the first: train\.json, line 3\)"
    ):
        features = D.qa_features(lost, tokenizer, max_length, 1)
    assert all(f["start_positions"] == 0 for f in features)
    # Validation windows are not trained on: the warning says what the loss means there.
    with pytest.warns(UserWarning, match="they can only be answered cut short") as caught:
        D.qa_features(lost, tokenizer, max_length, 1, training=False)
    assert "trained as unanswerable" not in str(caught[0].message)


# ---- multiple choice ----------------------------------------------------------------------------------------


def test_multiple_choice_reading_and_features(tmp_path, tokenizer):
    items = [
        {
            "context": "It rains.",
            "question": "What do you take?",
            "choices": ["an umbrella", "sunglasses"],
            "label": 0,
        },
        {"question": "Which is a fruit?", "choices": ["carrot", "apple"], "label": "apple"},
    ]
    path = write(tmp_path / "mc.jsonl", "".join(json.dumps(i) + "\n" for i in items))
    examples = D.read_multiple_choice(path)
    assert [e.prompt for e in examples] == ["It rains. What do you take?", "Which is a fruit?"]
    assert [e.label for e in examples] == [0, 1]
    features = D.choice_features(examples, tokenizer, 16)
    first = tokenizer("It rains. What do you take?", "an umbrella")["input_ids"]
    assert features[0]["input_ids"][0] == first and len(features[0]["input_ids"]) == 2
    batch = D.pad_collate(tokenizer.pad_token_id)(features)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, 2, len(first))
    assert batch["labels"].tolist() == [0, 1]
    bad = [
        ({**items[1], "label": 5}, r"line 2: label 5 is not the index"),
        (
            {**items[1], "choices": ["a", "b", "c"], "label": 0},
            r"line 2: 3 choices where the first item has 2",
        ),
        ({**items[1], "choices": "ab"}, r"line 2: choices must be a list"),
    ]
    for item, message in bad:
        with pytest.raises(D.DataError, match=message):
            D.read_multiple_choice(
                write(tmp_path / "b.jsonl", json.dumps(items[0]) + "\n" + json.dumps(item) + "\n")
            )
    with pytest.raises(D.DataError, match=r"no 'choices' field"):
        D.read_multiple_choice(write(tmp_path / "c.jsonl", '{"question": "q", "label": 0}\n'))


def test_pad_collate_pads_ids_masks_and_labels():
    collate = D.pad_collate(0)
    batch = collate([
        {"input_ids": [2, 5, 3], "token_type_ids": [0, 0, 0], "labels": [-100, 1, -100]},
        {"input_ids": [2, 3], "token_type_ids": [0, 0], "labels": [-100, -100]},
    ])  # fmt: skip
    assert batch["input_ids"].tolist() == [[2, 5, 3], [2, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 1, -100], [-100, -100, -100]]
    regression = collate([{"input_ids": [2], "token_type_ids": [0], "labels": 0.5}])
    assert regression["labels"].dtype == torch.float32


# ---- question answering: answers from logits as transformers' run_qa.py reads them -------------------------

QA_CONTEXT = "kappa unbelievably tau"
# [CLS] q ? [SEP] ▁kappa ▁un believ ably ▁tau [SEP]: the context's pieces and their character spans
QA_OFFSETS = [None, None, None, None, (0, 5), (6, 8), (8, 14), (14, 18), (19, 22), None]


def _window(scores: dict[int, tuple[float, float]], null: float = -9.0) -> tuple[dict, tuple]:
    start, end = torch.full((len(QA_OFFSETS),), -9.0), torch.full((len(QA_OFFSETS),), -9.0)
    start[0] = end[0] = null
    for position, (s, e) in scores.items():
        start[position], end[position] = s, e
    return {"example": 0, "offsets": QA_OFFSETS}, (start.numpy(), end.numpy())


def _answer(windows: list, version_2: bool = False, max_answer_length: int = 30) -> str:
    example = D.QAExample("q", "q?", QA_CONTEXT, [], "here")
    features, logits = zip(*windows)
    return D.qa_predictions([example], features, logits, max_answer_length, version_2)["q"]


def test_qa_answers_are_the_best_logit_sum_over_windows_as_run_qa():
    # The pipeline widened spans to words, summed spans of equal text and normalised each window apart;
    # run_qa scores a span start + end logit, across windows.
    spread = {4: (3.0, 3.0), 5: (2.6, 2.6), 6: (2.6, 2.6), 7: (2.6, 2.6)}
    assert _answer([_window(spread)]) == "kappa"  # 6 against 5.2 for every piece of "unbelievably"
    assert _answer([_window({4: (5.0, -9.0), 8: (-9.0, 5.0)})]) == "kappa unbelievably tau"
    assert (
        _answer([_window({4: (5.0, -9.0), 8: (-9.0, 5.0)})], max_answer_length=4) != "kappa unbelievably tau"
    )
    assert (
        _answer([_window({8: (5.0, -9.0), 4: (-9.0, 5.0)}), _window({6: (1.0, 1.0)})]) == "believ"
    )  # no end
    # two windows: the best span of either, whatever the other window's spans
    assert _answer([_window({4: (5.0, 5.0), 8: (4.9, 4.9)}), _window({8: (4.0, 4.0)})]) == "kappa"
    assert _answer([_window({4: (3.0, 3.0), 6: (2.9, 2.9)}), _window({8: (4.0, 4.0)})]) == "tau"


def test_qa_null_answer_is_the_lowest_cls_score_against_the_best_span():
    # version 2: the null score is the lowest window's [CLS] start + end (9 here), against the best span (8)
    windows = [_window({5: (4.0, 4.0)}, null=5.0), _window({4: (3.0, 3.0)}, null=4.5)]
    assert _answer(windows, version_2=True) == ""
    windows = [_window({5: (4.6, 4.6)}, null=5.0), _window({4: (3.0, 3.0)}, null=4.5)]
    assert _answer(windows, version_2=True) == "un"  # 9.2 > 9
    assert _answer(windows, version_2=False) == "un"


def test_multiple_choice_validation_may_offer_another_number_of_choices(tmp_path):
    # The model scores any number of choices; a validation file of 3 against training's 2 was refused.
    import openalbert
    from openalbert.finetuning.run import finetune

    def items(n_choices: int, n: int) -> str:
        rows = [{"question": f"Which is {c}?", "choices": [f"{c}", "x", "y"][:n_choices], "label": 0}
                for c in ("red", "blue", "green", "cold")[:n]]  # fmt: skip
        return "".join(json.dumps(r) + "\n" for r in rows)

    train, validation = (
        write(tmp_path / "train.jsonl", items(2, 4)),
        write(tmp_path / "val.jsonl", items(3, 3)),
    )
    result = finetune("multiple-choice", openalbert.DEFAULT_MODEL, train, validation, tmp_path / "out", epochs=1,
                      batch_size=2, max_length=16, progress=False)  # fmt: skip
    assert 0.0 <= result.metrics["eval_accuracy"] <= 1.0


def test_resuming_a_fine_tuning_on_another_training_file_is_refused(tmp_path):
    import openalbert
    from openalbert.finetuning.run import finetune

    rows = [("good film", "pos"), ("bad film", "neg"), ("great fun", "pos"), ("dull plot", "neg")]
    train = write(tmp_path / "train.csv", "text,label\n" + "".join(f"{t},{label}\n" for t, label in rows))
    validation = write(tmp_path / "val.csv", "text,label\nnice one,pos\nawful,neg\n")
    options = dict(epochs=2, batch_size=2, max_length=16, progress=False)
    finetune("text-classification", openalbert.DEFAULT_MODEL, train, validation, tmp_path / "out", **options)
    flipped = "".join(f"{t},{'neg' if label == 'pos' else 'pos'}\n" for t, label in rows)
    write(tmp_path / "train.csv", "text,label\n" + flipped)
    with pytest.raises(ValueError, match="trained on other data"):
        finetune("text-classification", openalbert.DEFAULT_MODEL, train, validation, tmp_path / "out",
                 resume=True, **options)  # fmt: skip
