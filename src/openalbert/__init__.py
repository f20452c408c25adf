"""openalbert: ALBERT (Lan et al., 2019) in PyTorch and JAX/Flax, checkpoint-compatible with transformers."""

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

_FLAX = (
    "FlaxAlbertModel",
    "FlaxAlbertForPreTraining",
    "FlaxAlbertForMaskedLM",
    "FlaxAlbertForSequenceClassification",
    "FlaxAlbertForTokenClassification",
    "FlaxAlbertForQuestionAnswering",
    "FlaxAlbertForMultipleChoice",
)


def __getattr__(name: str) -> object:
    """The Flax classes, imported on first use: `import openalbert` does not import JAX."""
    if name in _FLAX:
        from openalbert import modeling_flax

        return getattr(modeling_flax, name)
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
    *_FLAX,
    "__version__",
    "train_tokenizer",
    "pipeline",
]
