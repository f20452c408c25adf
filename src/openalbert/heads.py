"""The six ALBERT task heads on top of `AlbertModel`, their output dataclasses, and their losses.

Each head keeps transformers' module names (`predictions`, `sop_classifier`, `classifier`,
`qa_outputs`), forward signature and output fields, so checkpoints and user code move unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from openalbert import cpu_kernels
from openalbert.checkpoint import TIED_DECODER
from openalbert.config import AlbertConfig
from openalbert.linear import ACT2FN, Linear
from openalbert.modeling import AlbertModel, AlbertPreTrainedModel, ModelOutput

# ---- outputs --------------------------------------------------------------------------------------------


@dataclass
class AlbertForPreTrainingOutput(ModelOutput):
    loss: torch.Tensor | None = None
    prediction_logits: torch.Tensor | None = None
    sop_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class MaskedLMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class SequenceClassifierOutput(MaskedLMOutput):
    """loss and logits (B, num_labels)."""


@dataclass
class TokenClassifierOutput(MaskedLMOutput):
    """loss and logits (B, T, num_labels)."""


@dataclass
class MultipleChoiceModelOutput(MaskedLMOutput):
    """loss and logits (B, num_choices)."""


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


# ---- building blocks ---------------------------------------------------------------------------------------


class AlbertMLMHead(nn.Module):
    """H -> E (dense, activation, LayerNorm) -> vocabulary; the decoder is tied to the input embedding.
    Both projections are linear.Linear: packed weights for CPU inference, as in the encoder (on a CPU
    without bf16 arithmetic that keeps a bf16 decoder off PyTorch's emulated GEMM)."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        # The checkpoint names the output bias `predictions.bias`; the decoder uses that same tensor. Made in
        # transformers' order, so parameters (and an optimizer's state by index) come in its order.
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.dense = Linear(config.hidden_size, config.embedding_size)
        self.decoder = Linear(config.embedding_size, config.vocab_size)
        self.activation = ACT2FN[config.hidden_act]
        self.decoder.bias = self.bias

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.LayerNorm(self.activation(self.dense(hidden_states))))  # (B, T, V)

    def loss(self, hidden_states: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the labelled positions (labels != -100), as transformers computes it.

        When training on the CPU the loss gets its own projection of the labelled positions only (about
        15% of them), so its backward skips the vocabulary-sized work on the rest: 10% of an albert-base
        MLM step. The returned `logits` stay the full, differentiable projection. Elsewhere the loss is
        taken from `logits` (on a GPU the selection would wait for the device; without gradients it
        saves nothing worth a second projection).
        """
        flat = labels.reshape(-1)
        if (
            torch.is_grad_enabled()
            and hidden_states.device.type == "cpu"
            and not torch.compiler.is_compiling()
        ):
            keep = flat != -100
            picked = self(hidden_states.reshape(-1, hidden_states.shape[-1])[keep])
            return cpu_kernels.cross_entropy_sum(picked, flat[keep]) / keep.sum()  # mean; 0 rows: nan, as F's
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), flat)


class AlbertSOPHead(nn.Module):
    """Sentence-order prediction from the pooled [CLS] vector: 0 = in order, 1 = swapped."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.classifier_dropout_prob or 0.0)
        # Two classes whatever num_labels says (transformers sizes it by num_labels and then fails).
        self.classifier = Linear(config.hidden_size, 2)

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(pooled_output))


def _pooled_only(
    model: AlbertPreTrainedModel,
    ref: torch.Tensor | None,
    head_mask: torch.Tensor | None,
    output_attentions: bool | None,
    output_hidden_states: bool | None,
) -> torch.Tensor | None:
    """For a head that reads only the pooled [CLS] vector: [CLS] as the last layer's one query (B, 1), so
    that layer skips every other position (the same logits and gradients: AlbertModel's `queries_at`);
    None where the call also wants what the skipped positions hold (hidden states, attention maps) or masks
    heads."""
    attentions, hidden, _ = model.config.output_flags(output_attentions, output_hidden_states, None)
    if ref is None or ref.dim() not in (2, 3) or attentions or hidden or head_mask is not None:
        return None  # (malformed inputs get the model's own error)
    # (B, 1) zeros made from the input, so that a traced export keeps the batch axis dynamic
    return torch.zeros_like(ref[:, :1] if ref.dim() == 2 else ref[:, :1, 0], dtype=torch.long)


def _result(out: ModelOutput, return_dict: bool | None, config: AlbertConfig) -> ModelOutput | tuple:
    """The head's output, as a tuple where the call (or else the config) says return_dict=False."""
    return out.to_tuple() if config.output_flags(None, None, return_dict)[2] is False else out


class _MaskedLMBase(AlbertPreTrainedModel):
    _tied_weights_keys = TIED_DECODER

    def get_output_embeddings(self) -> nn.Linear:
        return self.predictions.decoder

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.predictions.decoder = value
        if value.bias is not None:  # the head's bias is the decoder's (predictions.bias in a checkpoint)
            self.predictions.bias = value.bias

    def tie_weights(self) -> None:
        super().tie_weights()
        self.predictions.decoder.bias = self.predictions.bias

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, AlbertMLMHead):
            nn.init.zeros_(module.bias)


# ---- the heads -----------------------------------------------------------------------------------------------


class AlbertForPreTraining(_MaskedLMBase):
    """ALBERT's pretraining model: masked-LM logits plus sentence-order-prediction logits."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.albert = AlbertModel(config)
        self.predictions = AlbertMLMHead(config)
        self.sop_classifier = AlbertSOPHead(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        sentence_order_label: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> AlbertForPreTrainingOutput | tuple:
        out = self.albert(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            head_mask,
            inputs_embeds,
            output_attentions,
            output_hidden_states,
            return_dict=True,
        )
        prediction_logits = self.predictions(out.last_hidden_state)
        sop_logits = self.sop_classifier(out.pooler_output)
        loss = None
        # As in transformers, the loss needs both label kinds; -100 marks tokens that are not predicted.
        if labels is not None and sentence_order_label is not None:
            mlm = self.predictions.loss(out.last_hidden_state, prediction_logits, labels)
            sop = F.cross_entropy(sop_logits.view(-1, 2), sentence_order_label.view(-1))
            loss = mlm + sop
        return _result(
            AlbertForPreTrainingOutput(
                loss, prediction_logits, sop_logits, out.hidden_states, out.attentions
            ),
            return_dict,
            self.config,
        )


class AlbertForMaskedLM(_MaskedLMBase):
    """Masked-token prediction over the vocabulary (the fill-mask model)."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.predictions = AlbertMLMHead(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> MaskedLMOutput | tuple:
        out = self.albert(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            head_mask,
            inputs_embeds,
            output_attentions,
            output_hidden_states,
            return_dict=True,
        )
        logits = self.predictions(out.last_hidden_state)
        loss = None
        if labels is not None:
            loss = self.predictions.loss(out.last_hidden_state, logits, labels)
        return _result(
            MaskedLMOutput(loss, logits, out.hidden_states, out.attentions), return_dict, self.config
        )


class AlbertForSequenceClassification(AlbertPreTrainedModel):
    """A linear classifier (or regressor) on the pooled [CLS] vector."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.albert = AlbertModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout_prob or 0.0)
        self.classifier = Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple:
        ref = input_ids if input_ids is not None else inputs_embeds
        out = self.albert(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            head_mask,
            inputs_embeds,
            output_attentions,
            output_hidden_states,
            return_dict=True,
            queries_at=_pooled_only(self, ref, head_mask, output_attentions, output_hidden_states),
        )
        logits = self.classifier(self.dropout(out.pooler_output))
        loss = None if labels is None else self._loss(logits, labels)
        return _result(
            SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions),
            return_dict,
            self.config,
        )

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # The problem type is inferred once from the labels, as transformers does, and kept in the config.
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            if self.num_labels == 1:
                return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
            return F.mse_loss(logits, labels.to(logits.dtype))
        if self.config.problem_type == "single_label_classification":
            return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class AlbertForTokenClassification(AlbertPreTrainedModel):
    """A linear classifier on every token's hidden state (NER, POS tagging)."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.albert = AlbertModel(config, add_pooling_layer=False)
        p = (
            config.classifier_dropout_prob
            if config.classifier_dropout_prob is not None
            else config.hidden_dropout_prob
        )
        self.dropout = nn.Dropout(p)
        self.classifier = Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> TokenClassifierOutput | tuple:
        out = self.albert(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            head_mask,
            inputs_embeds,
            output_attentions,
            output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(out.last_hidden_state))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return _result(
            TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions), return_dict, self.config
        )


class AlbertForQuestionAnswering(AlbertPreTrainedModel):
    """Extractive QA: a start and an end logit for every token."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.qa_outputs = Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> QuestionAnsweringModelOutput | tuple:
        out = self.albert(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            head_mask,
            inputs_embeds,
            output_attentions,
            output_hidden_states,
            return_dict=True,
        )
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            # Positions outside the window (an answer cut off by truncation) are clamped to T and ignored.
            T = start_logits.shape[1]
            start = start_positions.view(-1).clamp(0, T)
            end = end_positions.view(-1).clamp(0, T)
            loss = (
                F.cross_entropy(start_logits, start, ignore_index=T)
                + F.cross_entropy(end_logits, end, ignore_index=T)
            ) / 2
        return _result(
            QuestionAnsweringModelOutput(loss, start_logits, end_logits, out.hidden_states, out.attentions),
            return_dict,
            self.config,
        )


class AlbertForMultipleChoice(AlbertPreTrainedModel):
    """Scores each of N (prompt, choice) pairs from its pooled vector; softmax over the N choices."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.albert = AlbertModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout_prob or 0.0)
        self.classifier = Linear(config.hidden_size, 1)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> MultipleChoiceModelOutput | tuple:
        ref = input_ids if input_ids is not None else inputs_embeds
        if ref is None or ref.dim() < (3 if input_ids is not None else 4):
            raise ValueError("multiple-choice inputs must have shape (batch, num_choices, sequence)")
        num_choices = ref.shape[1]

        def flat(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.reshape(-1, t.shape[-1])  # (B * N, T)

        embeds = None if inputs_embeds is None else inputs_embeds.reshape(-1, *inputs_embeds.shape[-2:])
        out = self.albert(
            flat(input_ids),
            flat(attention_mask),
            flat(token_type_ids),
            flat(position_ids),
            head_mask,
            embeds,
            output_attentions,
            output_hidden_states,
            return_dict=True,
            queries_at=_pooled_only(
                self,
                flat(input_ids) if input_ids is not None else embeds,
                head_mask,
                output_attentions,
                output_hidden_states,
            ),
        )
        logits = self.classifier(self.dropout(out.pooler_output)).view(-1, num_choices)  # (B, N)
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return _result(
            MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions),
            return_dict,
            self.config,
        )


MODEL_CLASSES: dict[str, type[AlbertPreTrainedModel]] = {
    cls.__name__: cls
    for cls in (
        AlbertModel,
        AlbertForPreTraining,
        AlbertForMaskedLM,
        AlbertForSequenceClassification,
        AlbertForTokenClassification,
        AlbertForQuestionAnswering,
        AlbertForMultipleChoice,
    )
}
