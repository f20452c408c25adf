"""openalbert: ALBERT (Lan et al., 2019) in PyTorch, checkpoint-compatible with transformers."""

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
    "__version__",
    "train_tokenizer",
    "pipeline",
]
