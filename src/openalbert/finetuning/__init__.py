"""Fine-tuning ALBERT for sentence classification / regression, token classification, extractive question
answering and multiple choice: data readers, metrics, and the run (`finetune`)."""

from openalbert.finetuning.data import TASKS, DataError
from openalbert.finetuning.run import FinetuneResult, finetune

__all__ = ["TASKS", "DataError", "FinetuneResult", "finetune"]
