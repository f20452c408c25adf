"""openalbert: ALBERT (Lan et al., 2019) in PyTorch, checkpoint-compatible with transformers."""

__version__ = "0.1.0"
