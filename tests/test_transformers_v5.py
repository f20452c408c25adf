"""Our checkpoints load in transformers 5.x with identical outputs.

transformers 5 needs huggingface_hub 1.x, which conflicts with the 4.57.1 oracle, so it runs in its own
virtual environment (made once, beside the system site-packages for torch). Slow: it installs a package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from tests.conftest import TINY
from tests.test_modeling_parity import HEADS

import openalbert

pytestmark = pytest.mark.slow


LOAD = textwrap.dedent(
    """
    import sys, torch, transformers
    assert transformers.__version__.startswith("5."), transformers.__version__
    head, path, x = sys.argv[1], sys.argv[2], torch.load(sys.argv[3])
    model = getattr(transformers, head).from_pretrained(path).eval()
    with torch.no_grad():
        out = model(**x)
    torch.save({k: v for k, v in out.items() if torch.is_tensor(v)}, sys.argv[4])
    """
)


@pytest.fixture(scope="session")
def v5_python(tmp_path_factory) -> str:
    venv = Path(os.environ.get("OPENALBERT_TF5_VENV", tmp_path_factory.getbasetemp() / "tf5venv"))
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "transformers>=5,<6"], capture_output=True, text=True
        )
        if done.returncode:
            pytest.skip(f"could not install transformers 5 from the registry: {done.stderr[-300:]}")
    return str(python)


@pytest.mark.parametrize("head", HEADS)
def test_transformers_v5_loads_our_checkpoint(tmp_path, v5_python, head):
    torch.manual_seed(11)
    model = getattr(openalbert, head)(openalbert.AlbertConfig(**TINY)).eval()
    model.save_pretrained(tmp_path / "model")
    shape = (2, 2, 9) if head == "AlbertForMultipleChoice" else (2, 9)
    x = {
        "input_ids": torch.randint(5, TINY["vocab_size"], shape),
        "attention_mask": torch.ones(shape, dtype=torch.long),
        "token_type_ids": torch.zeros(shape, dtype=torch.long),
    }
    x["attention_mask"][..., 1, 6:] = 0
    torch.save(x, tmp_path / "x.pt")
    done = subprocess.run(
        [
            v5_python,
            "-c",
            LOAD,
            head,
            str(tmp_path / "model"),
            str(tmp_path / "x.pt"),
            str(tmp_path / "y.pt"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = torch.load(tmp_path / "y.pt")
    model.set_attn_implementation("sdpa")  # every position computed, padding included, as transformers does
    with torch.no_grad():
        ours = model(**x)
    assert theirs, "transformers 5 returned no tensors"
    for key, value in theirs.items():
        torch.testing.assert_close(ours[key], value, atol=1e-5, rtol=0, msg=key)
