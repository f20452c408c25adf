"""Fine-tuning ALBERT for sentence classification / regression, token classification, extractive question
answering and multiple choice: data readers (`data`), metrics (`metrics`), small real data sets from the
package registries (`datasets`), and the run (`finetune`)."""

from openalbert.finetuning.data import TASKS, DataError
from openalbert.finetuning.datasets import fetch_dataset
from openalbert.finetuning.run import FinetuneResult, finetune

__all__ = ["TASKS", "DataError", "FinetuneResult", "fetch_dataset", "finetune"]
