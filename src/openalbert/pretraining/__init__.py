"""Pretraining from raw text: real English corpora from the registries, ALBERT examples, the run."""

from openalbert.pretraining.corpora import fetch_corpora, heldout_files
from openalbert.pretraining.data import PretrainingDataset, prepare_pretraining_data, read_manifest

__all__ = [
    "PretrainingDataset",
    "fetch_corpora",
    "heldout_files",
    "prepare_pretraining_data",
    "read_manifest",
]
