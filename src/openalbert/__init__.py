"""openalbert: ALBERT (Lan et al., 2019) in PyTorch, JAX/Flax and TensorFlow, checkpoint-compatible with transformers."""

__version__ = "0.1.0"

from openalbert.checkpoint import DEFAULT_MODEL
from openalbert.config import PRESETS, AlbertConfig
from openalbert.heads import (
    AlbertForMaskedLM,
    AlbertForMultipleChoice,
    AlbertForPreTraining,
    AlbertForQuestionAnswering,
    AlbertForSequenceClassification,
    AlbertForTokenClassification,
)
from openalbert.modeling import AlbertModel, AlbertPreTrainedModel
from openalbert.pipelines import pipeline
from openalbert.tokenizer import AlbertTokenizer
from openalbert.vocab import train_tokenizer

_HEADS = (
    "AlbertModel",
    "AlbertForPreTraining",
    "AlbertForMaskedLM",
    "AlbertForSequenceClassification",
    "AlbertForTokenClassification",
    "AlbertForQuestionAnswering",
    "AlbertForMultipleChoice",
)
# The other frameworks' classes, imported on first use: `import openalbert` imports neither JAX nor TensorFlow.
_LAZY = {f"Flax{head}": "modeling_flax" for head in _HEADS} | {f"TF{head}": "modeling_tf" for head in _HEADS}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"openalbert.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'openalbert' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODEL",
    "PRESETS",
    "AlbertConfig",
    "AlbertForMaskedLM",
    "AlbertForMultipleChoice",
    "AlbertForPreTraining",
    "AlbertForQuestionAnswering",
    "AlbertForSequenceClassification",
    "AlbertForTokenClassification",
    "AlbertModel",
    "AlbertPreTrainedModel",
    "AlbertTokenizer",
    *_LAZY,
    "__version__",
    "train_tokenizer",
    "pipeline",
]
