"""The embedded default model: resolves with no network, fills a mask from the CLI, loads in transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from tests.conftest import NO_NETWORK_PRELUDE

import openalbert
from openalbert.checkpoint import DEFAULT_MODEL_DIR, resolve_path

OFFLINE_RUN = NO_NETWORK_PRELUDE + textwrap.dedent(
    """
    import sys
    from openalbert.cli import main
    sys.exit(main(["run", "--task", "fill-mask"]))
    """
)


def test_default_model_name_resolves_to_the_package():
    assert resolve_path(openalbert.DEFAULT_MODEL) == DEFAULT_MODEL_DIR
    for name in ("config.json", "model.safetensors", "spiece.model", "tokenizer_config.json", "README.md"):
        assert (DEFAULT_MODEL_DIR / name).is_file(), name
    # "a few MB": the weights ship in half precision
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size < 10e6


def test_cli_fills_a_mask_offline_with_the_default_model():
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_RUN],
        input="The capital of France is [MASK].\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    answers = json.loads(lines[0])
    assert len(answers) == 5
    assert all(set(a) == {"score", "token", "token_str", "sequence"} for a in answers)
    assert answers[0]["score"] >= answers[-1]["score"] > 0
    assert answers[0]["sequence"].startswith("the capital of france is")


def test_transformers_loads_the_default_model_with_the_same_logits():
    transformers = pytest.importorskip("transformers")
    ours = openalbert.AlbertForMaskedLM.from_pretrained(openalbert.DEFAULT_MODEL)
    theirs = transformers.AlbertForMaskedLM.from_pretrained(DEFAULT_MODEL_DIR, dtype=torch.float32).eval()
    tokenizer = transformers.AlbertTokenizer.from_pretrained(DEFAULT_MODEL_DIR)
    batch = tokenizer(
        ["the capital of france is [MASK] .", "she walked to the [MASK] ."], padding=True, return_tensors="pt"
    )
    keep = batch["attention_mask"].bool()  # the default unpadded path leaves padding positions at zero
    with torch.no_grad():
        torch.testing.assert_close(
            ours(**batch).logits[keep], theirs(**batch).logits[keep], atol=1e-4, rtol=0
        )
