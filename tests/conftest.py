"""Shared fixtures: tiny configurations and checkpoints made by transformers 4.57.1 (the oracle)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
SPIECE = SHARED / "data" / "albert-30k" / "spiece.model"

# Small enough to run in milliseconds, but exercising every structural option at once:
# two groups of two inner layers, shared across four layer applications.
TINY = dict(
    vocab_size=99,
    embedding_size=16,
    hidden_size=32,
    num_hidden_layers=4,
    num_hidden_groups=2,
    inner_group_num=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    type_vocab_size=2,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)

# The bare model and the six heads, by their PyTorch names (the Flax ones add a "Flax" prefix).
HEADS = [
    "AlbertModel",
    "AlbertForPreTraining",
    "AlbertForMaskedLM",
    "AlbertForSequenceClassification",
    "AlbertForTokenClassification",
    "AlbertForQuestionAnswering",
    "AlbertForMultipleChoice",
]

# The first lines of a Python script that must not touch the network: every connection attempt fails loudly.
NO_NETWORK_PRELUDE = """
import socket
def refuse(*args, **kwargs):
    raise AssertionError("network touched")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
"""

# ---- the Flax and TensorFlow classes' tests: one batch per head, compared field by field ------------------------

POSITIONS = ["absolute", "relative_key", "relative_key_query"]
B, T, N = 3, 11, 2  # batch, length, choices
# every head with absolute positions; relative ones (which transformers' Flax and TF classes ignore) on two heads
FRAMEWORK_CASES = [(head, "absolute") for head in HEADS] + [
    (head, position) for head in ("AlbertModel", "AlbertForPreTraining") for position in POSITIONS[1:]
]


def framework_inputs(head: str, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch for `head` with a padded row and two token types, as numpy arrays."""
    rng = np.random.RandomState(seed)
    shape = (B, N, T) if head == "AlbertForMultipleChoice" else (B, T)
    ids = rng.randint(5, TINY["vocab_size"], shape)
    mask = np.ones(shape, dtype=np.int64)
    mask[1, ..., 6:] = 0  # a padded row
    types = np.zeros(shape, dtype=np.int64)
    types[..., 4:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def framework_config(position: str = "absolute", **overrides):
    """TINY as an openalbert config: groups and inner layers > 1, so that the sharing and the state-dict names
    of both are exercised."""
    import openalbert

    return openalbert.AlbertConfig(**TINY | {"num_labels": 2} | overrides, position_embedding_type=position)


def assert_reheads(model, directory: Path) -> None:
    """A Flax or TF 3-label classifier, saved to `directory`, loads as a 2-label one only with
    ignore_mismatched_sizes, which lists the resized head weights as mismatched."""
    cls = type(model)
    model.save_pretrained(directory)
    with pytest.raises(ValueError, match="ignore_mismatched_sizes=True"):
        cls.from_pretrained(directory, num_labels=2)
    two, info = cls.from_pretrained(
        directory, num_labels=2, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert (
        sorted(info["mismatched_keys"]) == ["classifier.bias", "classifier.weight"]
        and not info["missing_keys"]
    )
    assert two(**framework_inputs("AlbertModel")).logits.shape == (B, 2)


def assert_activations_match(act2fn: dict, to_native) -> None:
    """Each of openalbert's activations (config.ACTIVATIONS) in `act2fn`, run on `to_native(x)`, against
    transformers' ACT2FN of the same name over [-12, 12]."""
    from transformers.activations import ACT2FN

    from openalbert.config import ACTIVATIONS

    x = torch.linspace(-12, 12, 2001)
    for name in ACTIVATIONS:
        got = torch.as_tensor(np.asarray(act2fn[name](to_native(x.numpy()))))
        torch.testing.assert_close(got, ACT2FN[name](x), atol=2e-6, rtol=1e-5, msg=name)


def output_pairs(expected, got) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(field, expected array, array) for every field `got` has, hidden states and attentions one by one."""
    pairs = []
    for field in got:
        value, reference = getattr(got, field), getattr(expected, field)
        if isinstance(value, tuple):
            pairs += [(f"{field}[{i}]", e, v) for i, (e, v) in enumerate(zip(reference, value, strict=True))]
        else:
            pairs.append((field, reference, value))
    return [
        (f, e.detach().numpy() if isinstance(e, torch.Tensor) else np.asarray(e), np.asarray(v))
        for f, e, v in pairs
    ]


# Tiny, but with the genuine 30k vocabulary so that tokenization is ALBERT's own (pipeline and CLI tests).
TINY_GENUINE_VOCAB = dict(
    vocab_size=30000,
    embedding_size=16,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=128,
)


@pytest.fixture(autouse=True)
def _torch_threads():
    torch.set_num_threads(2)
    torch.manual_seed(0)


def cache_dir(config: pytest.Config, name: str) -> Path:
    """pytest's cache directory `name`, kept between runs; with the cache plugin off (-p no:cacheprovider),
    a temporary one that lasts this run."""
    cache = getattr(config, "cache", None)
    return Path(cache.mkdir(name)) if cache is not None else _run_dir(name)


@functools.cache
def _run_dir(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{name}-"))


def spiece_or_skip() -> Path:
    if not SPIECE.is_file():
        pytest.skip(f"the genuine ALBERT vocabulary is not at {SPIECE} (../shared is absent)")
    return SPIECE


@pytest.fixture
def failing_compiler(monkeypatch, tmp_path):
    """$CC is a compiler that always fails, with an empty kernel cache: the compiled kernels are rebuilt
    (and fail) on next use; they are reloaded normally after the test."""
    from openalbert import cpu_kernels

    bad = tmp_path / "cc"
    bad.write_text("#!/bin/sh\necho 'no such compiler' >&2\nexit 1\n")
    bad.chmod(0o755)
    monkeypatch.setenv("CC", str(bad))
    monkeypatch.setenv("OPENALBERT_CACHE", str(tmp_path / "cache"))
    cpu_kernels._load.cache_clear()
    yield
    monkeypatch.undo()
    cpu_kernels._load.cache_clear()
