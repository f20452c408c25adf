"""The ALBERT model family in TensorFlow (Keras), reading and writing the same checkpoints as the PyTorch classes.

The classes, call signatures, outputs and losses are transformers 4.57.1's TensorFlow ALBERT (`TFAlbertModel`
and the six heads, removed from transformers v5), so code written for those runs on these: `model(input_ids,
attention_mask=..., training=False)`, a dict of inputs as the first argument, `labels=` for the loss, and
`model.compile(optimizer)` / `model.fit(dataset)` with the loss the model computes (or compile's `loss=`, and
its `metrics=`, on the head's output, and sample weights, as transformers' TF models take them). Beyond
them: Keras 3 (and
Keras 2), relative position embeddings ("relative_key", "relative_key_query"), which transformers' TF classes
ignore, and checkpoints written as `model.safetensors` in PyTorch's layout, so one directory serves PyTorch,
transformers, Flax and TensorFlow alike. `from_pretrained` reads every format (transformers' `tf_model.h5`
too: `openalbert.checkpoint.load_state_dict`). Numbers
match `openalbert.modeling` (the PyTorch model, itself held to transformers) to 1e-5 in fp32.

Each building block knows its variables by their PyTorch state-dict names (`_Module.params`), so saving and
loading are a walk over the model, not a conversion of names. Requires `pip install openalbert[tf]`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

try:
    import tensorflow as tf
except ImportError as e:
    raise ImportError(
        f"openalbert's TensorFlow classes need TensorFlow: pip install 'openalbert[tf]' ({e})"
    ) from e

from openalbert.checkpoint import (
    hub_options,
    load_config,
    load_state_dict,
    merge_checkpoint,
    refuse_pruned,
    resolve_weights,
    save_numpy_state,
    shard_bytes,
    untied_decoder_refused,
    weight_formats,
    write_config,
    write_tf_h5,
)
from openalbert.config import AlbertConfig, check_albert_config, converts_foreign_configs, refuse_upload
from openalbert.heads import (
    AlbertForPreTrainingOutput,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from openalbert.modeling import BaseModelOutputWithPooling, check_id_range, check_length

keras = tf.keras  # Keras 3 from TensorFlow 2.16 on (Keras 2 with TF_USE_LEGACY_KERAS=1)
_KERAS_3 = hasattr(keras, "ops")  # Keras 2 (tf-keras) has no keras.ops
logger = logging.getLogger(__name__)


# transformers' TF output classes have the PyTorch ones' fields; the names are kept for code that uses them.
TFBaseModelOutputWithPooling = BaseModelOutputWithPooling
TFAlbertForPreTrainingOutput = AlbertForPreTrainingOutput
TFMaskedLMOutput = MaskedLMOutput
TFSequenceClassifierOutput = SequenceClassifierOutput
TFTokenClassifierOutput = TokenClassifierOutput
TFQuestionAnsweringModelOutput = QuestionAnsweringModelOutput
TFMultipleChoiceModelOutput = MultipleChoiceModelOutput

ACT2FN = {
    "gelu": lambda x: tf.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: tf.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: tf.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: tf.nn.gelu(x, approximate=True),
    "quick_gelu": lambda x: x * tf.sigmoid(1.702 * x),
    "relu": tf.nn.relu,
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "tanh": tf.tanh,
    "sigmoid": tf.sigmoid,
    "mish": lambda x: x * tf.tanh(tf.math.softplus(x)),
    "linear": lambda x: x,
    "gelu_python": lambda x: tf.nn.gelu(x, approximate=False),
    "gelu_accurate": lambda x: tf.nn.gelu(x, approximate=True),
    "gelu_python_tanh": lambda x: tf.nn.gelu(x, approximate=True),
    "gelu_10": lambda x: tf.clip_by_value(tf.nn.gelu(x, approximate=False), -10.0, 10.0),
    "relu6": tf.nn.relu6,
    "relu2": lambda x: tf.square(tf.nn.relu(x)),
    "leaky_relu": lambda x: tf.nn.leaky_relu(x, alpha=0.01),
    "laplace": lambda x: 0.5 * (1.0 + tf.math.erf((x - 0.707107) / (0.282095 * 2.0**0.5))),
}


# ---- building blocks: each knows its weights by PyTorch name -------------------------------------------------


def _scope(layer: keras.layers.Layer, name: str) -> Any:
    """The name scope `layer` (named `name`) creates its weights and sub-layers in, so that variables carry
    the model's layer path, as transformers' TF classes' do: "tf_albert_for_masked_lm/albert/embeddings/
    LayerNorm/gamma:0" (Keras 2's name; Keras 3 keeps it in `variable.path`). Weight decay that excludes
    "LayerNorm" and "bias" by name (transformers' AdamWeightDecay) then finds them."""
    if _KERAS_3:  # (Keras 3's add_weight enters the layer's own scope again, unless it is this caller's)
        return keras.name_scope(name, caller=layer)
    return tf.name_scope(name)


class _Module(keras.layers.Layer):
    """A layer whose sub-layers (`children`) and own variables (`params`: attribute -> PyTorch name) are named
    as in a PyTorch state dict; `named_variables` walks them."""

    children: tuple[str, ...] = ()
    params: dict[str, str] = {}
    transposed: frozenset[str] = frozenset()  # variables stored (in, out) where PyTorch has (out, in)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def scoped_init(self: _Module, *args: Any, **kw: Any) -> None:
            if "name" not in kw or getattr(self, "_scoped", False):  # (a subclass's super().__init__)
                init(self, *args, **kw)
                return
            object.__setattr__(self, "_scoped", True)
            with _scope(self, kw["name"]):
                init(self, *args, **kw)

        # (Keras 3 reads the constructor's arguments from its signature, which the wrapper must not hide)
        scoped_init.__signature__ = inspect.signature(init)  # type: ignore[attr-defined]
        cls.__init__ = scoped_init

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Built in __init__, and called with flags and lists that Keras' __call__ takes only from a model's
        # caller: the encoder's pieces are plain calls.
        return self.call(*args, **kwargs)

    def named_variables(self, prefix: str = "") -> dict[str, tuple[Any, bool]]:
        """{PyTorch state-dict name: (variable, whether the array is transposed between the two)}."""
        out = {
            prefix + name: (getattr(self, attr), attr in self.transposed)
            for attr, name in self.params.items()
        }
        for attr in self.children:
            child = getattr(self, attr, None)
            items = (
                [(f"{attr}.{i}", c) for i, c in enumerate(child)]
                if isinstance(child, list)
                else [(attr, child)]
            )
            for name, layer in items:
                if layer is not None:
                    out |= layer.named_variables(f"{prefix}{name}.")
        return out

    def _weight(self, name: str, shape: tuple[int, ...], std: float | None) -> Any:
        init = keras.initializers.Zeros() if std is None else keras.initializers.TruncatedNormal(stddev=std)
        return self.add_weight(name=name, shape=shape, initializer=init, trainable=True)


class _Dense(_Module):
    params = {"kernel": "weight", "bias": "bias"}
    transposed = frozenset({"kernel"})

    def __init__(self, n_in: int, n_out: int, std: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel = self._weight("kernel", (n_in, n_out), std)
        self.bias = self._weight("bias", (n_out,), None)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(x, tf.cast(self.kernel, x.dtype)) + tf.cast(self.bias, x.dtype)


class _LayerNorm(_Module):
    params = {"gamma": "weight", "beta": "bias"}

    def __init__(self, size: int, eps: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eps = eps
        self.gamma = self.add_weight(name="gamma", shape=(size,), initializer="ones", trainable=True)
        self.beta = self.add_weight(name="beta", shape=(size,), initializer="zeros", trainable=True)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        x32 = tf.cast(x, tf.float32)  # statistics in fp32, as PyTorch computes them for half precision
        mean, var = tf.nn.moments(x32, axes=[-1], keepdims=True)
        # (Under a mixed-precision policy Keras reads variables in the compute dtype: cast them back.)
        gamma, beta = tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32)
        return tf.cast((x32 - mean) * tf.math.rsqrt(var + self.eps) * gamma + beta, x.dtype)


class _Embedding(_Module):
    """A lookup table; transformers' TF classes call its variable "weight" for words, "embeddings" else."""

    def __init__(self, rows: int, size: int, std: float, variable: str = "embeddings", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.params = {variable: "weight"}
        self.variable_name = variable
        setattr(self, variable, self._weight(variable, (rows, size), std))

    @property
    def table(self) -> Any:
        return getattr(self, self.variable_name)

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        return tf.gather(self.table, ids)

    def set_table(self, value: Any) -> None:
        """Replace the table (a variable or an array of shape (rows, size)) with a new variable holding it."""
        _replace_weight(self, self.variable_name, value)


@contextlib.contextmanager
def _scope_of(layer: _Module, variable: Any) -> Iterator[None]:
    """The name scope `variable` of `layer` was made in: a weight made here gets the same layer path."""
    if not _KERAS_3:
        parent = variable.name.rpartition("/")[0]
        with tf.name_scope(parent + "/") if parent else contextlib.nullcontext():
            yield
        return
    parts = variable.path.split("/")[:-1]
    with contextlib.ExitStack() as stack:
        for i, part in enumerate(parts):
            stack.enter_context(keras.name_scope(part, caller=layer if i == len(parts) - 1 else None))
        yield


def _replace_weight(layer: _Module, attr: str, value: Any, std: float | None = None) -> Any:
    """Give `layer.attr` a new variable of `value`'s shape holding it (an int: that many rows of the old
    variable, cut or grown by rows drawn like the first ones, N(0, std) truncated, or zeros without std).
    The old variable is untracked first, so that the model's weights, count and optimizer see only the new."""
    old = getattr(layer, attr)
    if isinstance(value, int):
        rows = old.numpy()[:value]
        grown = (
            keras.initializers.TruncatedNormal(stddev=std) if std is not None else keras.initializers.Zeros()
        )
        extra = np.asarray(grown((value - len(rows), *old.shape[1:]), dtype="float32"))
        value = np.concatenate([rows, extra.astype(rows.dtype)]) if len(extra) else rows
    value = np.asarray(value.numpy() if hasattr(value, "numpy") else value, dtype=np.float32)
    delattr(layer, attr)
    with _scope_of(layer, old):
        new = layer.add_weight(name=attr, shape=value.shape, initializer="zeros", trainable=True)
    new.assign(value)
    setattr(layer, attr, new)
    return new


# ---- the encoder -------------------------------------------------------------------------------------------


class TFAlbertEmbeddings(_Module):
    """Word + token-type (+ absolute position) embeddings of size E, then LayerNorm and dropout."""

    children = ("word_embeddings", "token_type_embeddings", "position_embeddings", "LayerNorm")

    def __init__(self, config: AlbertConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        cfg, std, E = config, config.initializer_range, config.embedding_size
        self.config = cfg
        self.word_embeddings = _Embedding(cfg.vocab_size, E, std, "weight", name="word_embeddings")
        self.token_type_embeddings = _Embedding(cfg.type_vocab_size, E, std, name="token_type_embeddings")
        self.position_embeddings = _Embedding(cfg.max_position_embeddings, E, std, name="position_embeddings")
        self.LayerNorm = _LayerNorm(E, cfg.layer_norm_eps, name="LayerNorm")
        self.dropout = keras.layers.Dropout(cfg.hidden_dropout_prob)

    def call(
        self,
        input_ids: tf.Tensor | None,
        token_type_ids: tf.Tensor,
        position_ids: tf.Tensor,
        inputs_embeds: tf.Tensor | None,
        training: bool,
    ) -> tf.Tensor:
        embeddings = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        # With relative positions the original adds no absolute position embedding at all.
        if self.config.position_embedding_type == "absolute":
            embeddings = embeddings + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings), training=training)  # (B, T, E)


class TFAlbertAttention(_Module):
    """Multi-head self-attention with absolute or relative positions, then dense, residual, LayerNorm."""

    children = ("query", "key", "value", "dense", "LayerNorm", "distance_embedding")

    def __init__(self, config: AlbertConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        cfg, H, std = config, config.hidden_size, config.initializer_range
        self.config = cfg
        self.query, self.key, self.value, self.dense = (
            _Dense(H, H, std, name=n) for n in ("query", "key", "value", "dense")
        )
        self.LayerNorm = _LayerNorm(H, cfg.layer_norm_eps, name="LayerNorm")
        self.attention_dropout = keras.layers.Dropout(cfg.attention_probs_dropout_prob)
        self.output_dropout = keras.layers.Dropout(cfg.hidden_dropout_prob)
        self.distance_embedding = None
        if cfg.position_embedding_type != "absolute":
            self.distance_embedding = _Embedding(
                2 * cfg.max_position_embeddings - 1, cfg.head_dim, std, name="distance_embedding"
            )

    def call(
        self, hidden: tf.Tensor, mask: tf.Tensor, head_mask: tf.Tensor | None, training: bool
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """(B, T, H) -> (B, T, H) and the attention probabilities (B, nh, T, T); `mask` is additive."""
        cfg = self.config
        B, T = tf.shape(hidden)[0], tf.shape(hidden)[1]

        def heads(x: tf.Tensor) -> tf.Tensor:  # (B, T, H) -> (B, nh, T, hd)
            return tf.transpose(tf.reshape(x, (B, T, cfg.num_attention_heads, cfg.head_dim)), (0, 2, 1, 3))

        q, k, v = heads(self.query(hidden)), heads(self.key(hidden)), heads(self.value(hidden))
        scores = tf.matmul(q, k, transpose_b=True) / tf.cast(cfg.head_dim**0.5, q.dtype)  # (B, nh, T, T)
        if self.distance_embedding is not None:
            # As in the original, the relative scores are added after the 1/sqrt(d) scaling.
            positions = tf.range(T)
            distance = positions[:, None] - positions[None, :] + cfg.max_position_embeddings - 1
            rel = tf.cast(self.distance_embedding(distance), q.dtype)  # (T, T, hd): query l, key r
            scores = scores + tf.einsum("bhld,lrd->bhlr", q, rel)
            if cfg.position_embedding_type == "relative_key_query":
                scores = scores + tf.einsum("bhrd,lrd->bhlr", k, rel)
        probs = tf.cast(tf.nn.softmax(tf.cast(scores + mask, tf.float32), axis=-1), q.dtype)
        if head_mask is not None:
            probs = probs * head_mask
        context = tf.matmul(self.attention_dropout(probs, training=training), v)
        context = tf.reshape(tf.transpose(context, (0, 2, 1, 3)), (B, T, cfg.hidden_size))
        out = self.output_dropout(self.dense(context), training=training)
        return self.LayerNorm(hidden + out), probs


class TFAlbertLayer(_Module):
    """Attention, then a feed-forward block with residual and LayerNorm."""

    children = ("attention", "ffn", "ffn_output", "full_layer_layer_norm")

    def __init__(self, config: AlbertConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        cfg, std = config, config.initializer_range
        self.act = ACT2FN[cfg.hidden_act]
        self.attention = TFAlbertAttention(cfg, name="attention")
        self.ffn = _Dense(cfg.hidden_size, cfg.intermediate_size, std, name="ffn")
        self.ffn_output = _Dense(cfg.intermediate_size, cfg.hidden_size, std, name="ffn_output")
        self.full_layer_layer_norm = _LayerNorm(
            cfg.hidden_size, cfg.layer_norm_eps, name="full_layer_layer_norm"
        )
        # The original applies dropout to the feed-forward output (openalbert.modeling.AlbertLayer too).
        self.dropout = keras.layers.Dropout(cfg.hidden_dropout_prob)

    def call(
        self, hidden: tf.Tensor, mask: tf.Tensor, head_mask: tf.Tensor | None, training: bool
    ) -> tuple[tf.Tensor, tf.Tensor]:
        attended, probs = self.attention(hidden, mask, head_mask, training=training)
        ffn = self.dropout(self.ffn_output(self.act(self.ffn(attended))), training=training)
        return self.full_layer_layer_norm(attended + ffn), probs


class TFAlbertLayerGroup(_Module):
    """`inner_group_num` layers with their own weights, run in sequence; a group is the unit of sharing."""

    children = ("albert_layers",)

    def __init__(self, config: AlbertConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.albert_layers = [
            TFAlbertLayer(config, name=f"albert_layers_._{j}") for j in range(config.inner_group_num)
        ]


class TFAlbertTransformer(_Module):
    """Map E -> H, then run `num_hidden_layers` layers through the shared groups."""

    children = ("embedding_hidden_mapping_in", "albert_layer_groups")

    def __init__(self, config: AlbertConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.embedding_hidden_mapping_in = _Dense(
            config.embedding_size,
            config.hidden_size,
            config.initializer_range,
            name="embedding_hidden_mapping_in",
        )
        self.albert_layer_groups = [
            TFAlbertLayerGroup(config, name=f"albert_layer_groups_._{g}")
            for g in range(config.num_hidden_groups)
        ]

    def call(
        self, embeddings: tf.Tensor, mask: tf.Tensor, head_mask: list[tf.Tensor | None], training: bool
    ) -> tuple[tf.Tensor, tuple[tf.Tensor, ...], tuple[tf.Tensor, ...]]:
        cfg = self.config
        hidden = self.embedding_hidden_mapping_in(embeddings)  # (B, T, H)
        all_hidden, all_probs = [hidden], []
        for i in range(cfg.num_hidden_layers):
            # The whole of ALBERT's cross-layer sharing: layer i reuses the weights of group g.
            g = cfg.group_of(i)
            for layer in self.albert_layer_groups[g].albert_layers:
                hidden, probs = layer(hidden, mask, head_mask[i], training=training)
                all_probs.append(probs)
            all_hidden.append(hidden)
        return hidden, tuple(all_hidden), tuple(all_probs)


class TFAlbertMainLayer(_Module):
    """The ALBERT encoder: hidden states for every token and a pooled [CLS] vector."""

    children = ("embeddings", "encoder", "pooler")

    def __init__(self, config: AlbertConfig, add_pooling_layer: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.embeddings = TFAlbertEmbeddings(config, name="embeddings")
        self.encoder = TFAlbertTransformer(config, name="encoder")
        self.pooler = (
            _Dense(config.hidden_size, config.hidden_size, config.initializer_range, name="pooler")
            if add_pooling_layer
            else None
        )

    def call(
        self,
        input_ids: tf.Tensor | None,
        attention_mask: tf.Tensor | None,
        token_type_ids: tf.Tensor | None,
        position_ids: tf.Tensor | None,
        head_mask: tf.Tensor | None,
        inputs_embeds: tf.Tensor | None,
        output_attentions: bool,
        output_hidden_states: bool,
        training: bool,
    ) -> BaseModelOutputWithPooling:
        cfg = self.config
        shape = tf.shape(input_ids) if input_ids is not None else tf.shape(inputs_embeds)[:-1]
        if attention_mask is None:
            attention_mask = tf.ones(shape, tf.int32)
        if token_type_ids is None:
            token_type_ids = tf.zeros(shape, tf.int32)
        if position_ids is None:
            position_ids = tf.range(shape[1])[None, :]
        embeddings = self.embeddings(
            input_ids, token_type_ids, position_ids, inputs_embeds, training=training
        )
        dtype = embeddings.dtype
        # (B, 1, 1, T) additive mask over the keys, as the PyTorch model writes it
        mask = (1.0 - tf.cast(attention_mask[:, None, None, :], dtype)) * dtype.min
        hidden, all_hidden, all_probs = self.encoder(
            embeddings, mask, _head_mask(head_mask, cfg, dtype), training=training
        )
        pooled = tf.tanh(self.pooler(hidden[:, 0])) if self.pooler is not None else None
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden,
            pooler_output=pooled,
            hidden_states=all_hidden if output_hidden_states else None,
            attentions=all_probs if output_attentions else None,
        )


def _head_mask(head_mask: Any, cfg: AlbertConfig, dtype: tf.DType) -> list[tf.Tensor | None]:
    """One (1 or B, nh, 1, 1) multiplier per layer from a (nh,) or (L, nh) mask, as the PyTorch model reads it."""
    if head_mask is None:
        return [None] * cfg.num_hidden_layers
    mask = tf.cast(tf.convert_to_tensor(head_mask), dtype)
    if mask.shape.rank == 1:
        mask = tf.tile(mask[None], (cfg.num_hidden_layers, 1))
    return [mask[i][None, :, None, None] for i in range(cfg.num_hidden_layers)]


# ---- heads ---------------------------------------------------------------------------------------------------


class TFAlbertMLMHead(_Module):
    """H -> E (dense, activation, LayerNorm) -> vocabulary; the decoder is the word embedding, transposed,
    plus `predictions.bias` (transformers' TF classes keep a copy of it as `decoder/bias`)."""

    children = ("dense", "LayerNorm")
    params = {"bias": "bias"}

    def __init__(self, config: AlbertConfig, word_embeddings: _Embedding, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        untied_decoder_refused(config, "TensorFlow")
        self.config = config
        # A function, not an attribute: Keras would track the embedding as this layer's too, and train it twice.
        self.word_table = lambda: word_embeddings.table
        self.dense = _Dense(config.hidden_size, config.embedding_size, config.initializer_range, name="dense")
        self.LayerNorm = _LayerNorm(config.embedding_size, config.layer_norm_eps, name="LayerNorm")
        self.bias = self._weight("bias", (config.vocab_size,), None)

    def call(self, hidden: tf.Tensor) -> tf.Tensor:
        hidden = self.LayerNorm(ACT2FN[self.config.hidden_act](self.dense(hidden)))
        table = tf.cast(self.word_table(), hidden.dtype)
        return tf.matmul(hidden, table, transpose_b=True) + tf.cast(self.bias, hidden.dtype)  # (B, T, V)


class TFAlbertSOPHead(_Module):
    """Sentence-order prediction from the pooled [CLS] vector: 0 = in order, 1 = swapped."""

    children = ("classifier",)

    def __init__(self, config: AlbertConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dropout = keras.layers.Dropout(config.classifier_dropout_prob or 0.0)
        self.classifier = _Dense(config.hidden_size, 2, config.initializer_range, name="classifier")

    def call(self, pooled: tf.Tensor, training: bool) -> tf.Tensor:
        return self.classifier(self.dropout(pooled, training=training))


# ---- losses: transformers' TF losses (labels of -100 ignored; MLM and token losses averaged to shape (1,),
# the others one per example), so that Keras reduces them as it does transformers' -------------------------------


def _sparse_ce(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.cast(labels, tf.int32), tf.cast(logits, tf.float32)
    )


def _masked_mean_ce(labels: tf.Tensor, logits: tf.Tensor, keep: tf.Tensor | None = None) -> tf.Tensor:
    labels = tf.cast(labels, tf.int32)
    keep = tf.cast(labels != -100 if keep is None else keep, tf.float32)
    losses = _sparse_ce(tf.nn.relu(labels), logits) * keep
    return tf.reshape(tf.reduce_sum(losses) / tf.reduce_sum(keep), (1,))


# What compile(loss=...) may say for the model's own loss: transformers' TF models take these too.
_INTERNAL_LOSS = ("auto", "auto_with_warning", "passthrough")


def _matching(y: Any, out: Any) -> tuple[Any, Any]:
    """Labels and the outputs a loss or metric compares them with, by transformers' TF rules: one label (or a
    dict of one that names no output) against the first output after the loss; a dict against the outputs
    it names; a tuple or list against the outputs in order, after the loss."""
    fields = [k for k, v in vars(out).items() if v is not None and k != "loss"]
    if isinstance(y, Mapping):
        if len(y) == 1:
            ((key, value),) = y.items()
            return value, getattr(out, key) if key in fields else getattr(out, fields[0])
        return dict(y), {k: getattr(out, k) for k in y if k in fields}
    if isinstance(y, (list, tuple)):
        return y, tuple(getattr(out, k) for k in fields[: len(y)])
    return y, getattr(out, fields[0])


def _weighted_mean(loss: tf.Tensor, weight: Any, name: str) -> tf.Tensor:
    """Keras' sum-over-batch-size reduction of per-example losses with sample weights."""
    weight = tf.reshape(tf.cast(weight, loss.dtype), (-1,))
    if loss.shape.rank != 1 or (
        loss.shape[0] is not None and weight.shape[0] is not None and loss.shape[0] != weight.shape[0]
    ):
        raise ValueError(
            f"sample_weight weighs one loss per example, but {name}'s own loss has shape {tuple(loss.shape)} "
            "(one number per batch); pass compile(loss=...) to weigh examples"
        )
    return tf.reduce_sum(loss * weight) / tf.cast(tf.size(loss), loss.dtype)


# ---- the model classes ----------------------------------------------------------------------------------------


class TFAlbertPreTrainedModel(keras.Model):
    """A Keras model with transformers' TF call signature, and `from_pretrained` / `save_pretrained` on the
    same checkpoint directories as the PyTorch classes."""

    base_model_prefix = "albert"
    pooling = True  # whether the head reads the pooled [CLS] vector
    label_names: tuple[str, ...] = ("labels",)
    head_children: tuple[str, ...] = ()  # the head's layers that hold weights
    state_prefix = "albert."  # where the encoder's weights sit in a state dict (the bare model's: at the top)

    @converts_foreign_configs
    def __init__(self, config: AlbertConfig, **kwargs: Any) -> None:
        kwargs.setdefault("name", _snake(type(self).__name__))
        super().__init__(**kwargs)
        check_albert_config(config)
        config.validate()
        self.config = config
        with _scope(self, self.name):
            self.albert = TFAlbertMainLayer(config, add_pooling_layer=self.pooling, name="albert")
            self.head_init()
        # The loss `fit` and `evaluate` report; set past Keras' tracking, which under Keras 2 would count its
        # two variables in count_params() and weights.
        object.__setattr__(self, "_loss_mean", keras.metrics.Mean(name="loss"))
        # Every weight exists from here on (from_pretrained assigns them); Keras is told so, layer by layer.
        for layer in (self, *self._flatten_layers(include_self=False)):
            layer.built = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # keras.models.load_model finds the class of a saved .keras model by this name
        keras.utils.register_keras_serializable(package="openalbert")(cls)

    def get_config(self) -> dict[str, Any]:
        """What `model.save("x.keras")` stores to rebuild the model (`from_config`): the ALBERT config."""
        return {"config": self.config.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TFAlbertPreTrainedModel:
        config = dict(config)
        return cls(AlbertConfig.from_dict(config.pop("config")), **config)

    def head_init(self) -> None:
        """The head's layers (none for the bare model)."""

    # ---- transformers' TFPreTrainedModel API around the call ----

    main_input_name = "input_ids"

    @property
    def input_signature(self) -> dict[str, tf.TensorSpec]:
        """The int32 inputs a saved model is served with: (batch, length), or (batch, choices, length) for
        multiple choice."""
        shape = (None, None, None) if isinstance(self, TFAlbertForMultipleChoice) else (None, None)
        names = ("input_ids", "attention_mask", "token_type_ids")
        return {name: tf.TensorSpec(shape, tf.int32, name=name) for name in names}

    @property
    def dummy_inputs(self) -> dict[str, tf.Tensor]:
        """Small inputs of `input_signature`'s shapes (batch 1, other axes 2), as transformers makes them."""
        dummies = {}
        for name, spec in self.input_signature.items():
            shape = [1] + [2 if dim is None else dim for dim in spec.shape[1:]]
            dummies[name] = (tf.zeros if name == "token_type_ids" else tf.ones)(shape, spec.dtype)
        return dummies

    def serving_output(self, output: Any) -> Any:
        """`output` as a served model returns it: hidden states and attention maps stacked into one tensor each
        where the config asks for them, None where it does not."""
        for flag, name in (("output_hidden_states", "hidden_states"), ("output_attentions", "attentions")):
            value = getattr(output, name, None)
            if not getattr(self.config, flag):
                setattr(output, name, None)
            elif value is not None:
                setattr(output, name, tf.convert_to_tensor(value))
        return output

    def hf_compute_loss(self, labels: Any, logits: Any) -> tf.Tensor:
        """The head's loss of `labels` and `logits`, as the call computes it (transformers' TF loss mixins)."""
        raise NotImplementedError(f"{type(self).__name__} has no loss of its own")

    def prepare_tf_dataset(
        self,
        dataset: Any,
        batch_size: int = 8,
        shuffle: bool = True,
        tokenizer: Any = None,
        collate_fn: Callable[..., dict[str, Any]] | None = None,
        collate_fn_args: dict[str, Any] | None = None,
        drop_remainder: bool | None = None,
        prefetch: bool = True,
    ) -> tf.data.Dataset:
        """A `datasets.Dataset` as the tf.data.Dataset that `fit` takes, as transformers makes it: the columns
        the call reads as inputs, the head's label columns ("label" and "label_ids" read as "labels") as
        labels, the others dropped; batches padded by `tokenizer` (label lists to the same width with -100),
        or stacked as they are without one; the last short batch dropped when shuffling, unless told."""
        if not hasattr(dataset, "to_tf_dataset"):
            raise TypeError(
                f"prepare_tf_dataset takes a datasets.Dataset (pip install datasets), not {type(dataset).__name__}"
            )
        wanted = set(_CALL_ORDER) | set(self.label_names)
        dataset = dataset.remove_columns(
            [c for c in dataset.column_names if _LABEL_COLUMNS.get(c, c) not in wanted]
        )
        if not any(c in _CALL_ORDER for c in dataset.column_names):
            raise ValueError(f"the dataset has no input column ({', '.join(_CALL_ORDER)})")
        if collate_fn is None:
            collate_fn, collate_fn_args = _collate, {"tokenizer": tokenizer}
        collate_fn_args = collate_fn_args or {}
        # The columns of a batch as the collation makes them (padding adds attention_mask)
        sample = collate_fn([dataset[i] for i in range(min(2, len(dataset)))], **collate_fn_args)
        inputs = [c for c in sample if c in _CALL_ORDER]
        labels = [c for c in sample if c in self.label_names]
        return dataset.to_tf_dataset(
            columns=inputs[0] if len(inputs) == 1 else inputs,
            label_cols=(labels[0] if len(labels) == 1 else labels) or None,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_remainder=shuffle if drop_remainder is None else drop_remainder,
            collate_fn=collate_fn,
            collate_fn_args=collate_fn_args,
            prefetch=prefetch,
        )

    push_to_hub = refuse_upload

    # ---- transformers' TF model API over the embeddings ----

    def num_parameters(self, only_trainable: bool = False) -> int:
        weights = self.trainable_weights if only_trainable else self.weights  # (not Keras' dropout seeds)
        return int(sum(np.prod(w.shape) for w in weights))

    def get_input_embeddings(self) -> _Embedding:
        """The word-embedding layer; its table is `.weight`, (vocab_size, embedding_size)."""
        return self.albert.embeddings.word_embeddings

    def set_input_embeddings(self, value: Any) -> None:
        """A new word-embedding table (a variable or an array of shape (rows, embedding_size)); the masked-LM
        head decodes with it too, and `config.vocab_size` follows its rows."""
        if tuple(value.shape[1:]) != (self.config.embedding_size,):
            raise ValueError(
                f"the embedding table must have shape (rows, {self.config.embedding_size}), got {tuple(value.shape)}"
            )
        self.get_input_embeddings().set_table(value)
        self.config.vocab_size = int(value.shape[0])

    def get_lm_head(self) -> TFAlbertMLMHead | None:
        """The masked-LM head (for the heads that predict tokens), else None."""
        return getattr(self, "predictions", None)

    def get_output_embeddings(self) -> _Embedding | None:
        """The table the masked-LM head decodes with: the input embeddings, tied."""
        return self.get_input_embeddings() if self.get_lm_head() is not None else None

    def get_bias(self) -> dict[str, Any] | None:
        head = self.get_lm_head()
        return None if head is None else {"bias": head.bias}

    def set_bias(self, value: Mapping[str, Any]) -> None:
        head = self.get_lm_head()
        if head is None:
            raise ValueError(f"{type(self).__name__} has no masked-LM head and so no output bias")
        _replace_weight(head, "bias", value["bias"])
        self.config.vocab_size = int(value["bias"].shape[0])

    def resize_token_embeddings(self, new_num_tokens: int | None = None) -> Any:
        """Grow or cut the vocabulary to `new_num_tokens` rows: the first rows are kept, new ones drawn as
        the model initialises them (the masked-LM bias grows by zeros). Returns the embedding variable.
        Compile the model again before `fit`: its optimizer held the old variables."""
        if new_num_tokens is not None and new_num_tokens != self.config.vocab_size:
            if new_num_tokens < 1:
                raise ValueError(f"new_num_tokens must be >= 1, got {new_num_tokens}")
            embeddings = self.get_input_embeddings()
            _replace_weight(
                embeddings, embeddings.variable_name, new_num_tokens, self.config.initializer_range
            )
            if (head := self.get_lm_head()) is not None:
                _replace_weight(head, "bias", new_num_tokens)
            self.config.vocab_size = new_num_tokens
        return self.get_input_embeddings().table

    def head(self, out: BaseModelOutputWithPooling, labels: dict[str, Any], training: bool) -> Any:
        return out

    # -- calling ------------------------------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args and "input_ids" not in kwargs:
            kwargs["input_ids"] = None  # model(inputs_embeds=...): Keras 2 needs the first argument
        if args and isinstance(args[0], Mapping):
            # Keras 3 takes no flags (output_hidden_states=True) or Nones among the tensors of the first
            # argument, which transformers' TF models take there: they go by name instead.
            given = dict(args[0])
            plain = {k: given.pop(k) for k in list(given) if given[k] is None or isinstance(given[k], bool)}
            args, kwargs = (given, *args[1:]), plain | kwargs
        return super().__call__(*args, **kwargs)

    def call(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        token_type_ids: Any = None,
        position_ids: Any = None,
        head_mask: Any = None,
        inputs_embeds: Any = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        training: bool = False,
        **labels: Any,
    ) -> Any:
        """transformers' TF call: int tensors or arrays (B, T) ((B, C, T) for multiple choice), or a dict of
        them as the first argument, as Keras passes a batch, or a list of them in the order of the arguments;
        the head's labels by name for the loss."""
        if isinstance(input_ids, (list, tuple)) and input_ids and not _is_ids(input_ids[0]):
            input_ids = dict(zip(_CALL_ORDER, input_ids))  # model([ids, mask, types]): tensors, not ids
        if isinstance(input_ids, Mapping):  # model({"input_ids": ..., "attention_mask": ...})
            given = dict(input_ids)
            input_ids = given.pop("input_ids", None)
            attention_mask = given.pop("attention_mask", attention_mask)
            token_type_ids = given.pop("token_type_ids", token_type_ids)
            position_ids = given.pop("position_ids", position_ids)
            head_mask = given.pop("head_mask", head_mask)
            inputs_embeds = given.pop("inputs_embeds", inputs_embeds)
            output_attentions = given.pop("output_attentions", output_attentions)
            output_hidden_states = given.pop("output_hidden_states", output_hidden_states)
            return_dict = given.pop("return_dict", return_dict)
            labels = given | labels
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        unknown = set(labels) - set(self.label_names)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(unknown)}")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        inputs = [_int(x) for x in (input_ids, attention_mask, token_type_ids, position_ids)]
        if input_ids is not None:
            self._check(inputs[0])
        embeds = None if inputs_embeds is None else tf.convert_to_tensor(inputs_embeds)
        out = self.head_call(
            inputs,
            head_mask,
            embeds,
            bool(output_attentions),
            bool(output_hidden_states),
            {k: v for k, v in labels.items() if v is not None},
            training,
        )
        return out if return_dict else out.to_tuple()

    def head_call(
        self,
        inputs: list[tf.Tensor | None],
        head_mask: Any,
        embeds: tf.Tensor | None,
        output_attentions: bool,
        output_hidden_states: bool,
        labels: dict[str, Any],
        training: bool,
    ) -> Any:
        out = self.albert(
            *inputs, head_mask, embeds, output_attentions, output_hidden_states, training=training
        )
        return self.head(out, labels, training)

    def _check(self, ids: tf.Tensor) -> None:
        """The errors a user can cause, named, before `tf.gather` fails deep inside (or, on a GPU, returns
        zeros for an out-of-range id)."""
        if ids.shape.rank is not None and ids.shape[-1] is not None:  # (a traced shape may be unknown)
            check_length(ids.shape[-1], self.config)
        if not tf.executing_eagerly():
            return  # traced in a tf.function (as Keras' fit runs it): the values are not known here
        if tf.size(ids) == 0:
            raise ValueError(f"empty batch: input shape is {tuple(ids.shape)}")
        check_id_range("input_ids", int(tf.reduce_min(ids)), int(tf.reduce_max(ids)), self.config.vocab_size)

    # -- Keras training: the loss the model computes from the labels, as transformers' TF models do, or the one
    # given to compile(loss=...); compile(metrics=...) on the head's first output (its logits) ----------------

    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, *args: Any, **kwargs: Any) -> None:
        """Keras' compile. Without `loss` (or with transformers' "auto" and "passthrough") `fit` trains on
        the loss the model computes from the labels; with one, on that loss of the labels and the head's
        output. `metrics` are computed on that output (the logits) against the labels."""
        self._internal_loss = loss is None or (isinstance(loss, str) and loss in _INTERNAL_LOSS)
        super().compile(optimizer, None if self._internal_loss else loss, *args, **kwargs)

    def train_step(self, data: Any) -> dict[str, Any]:
        optimizer = self.optimizer
        with tf.GradientTape() as tape:
            loss, x, y, y_pred, weight = self._loss_of(data, training=True)
            # A loss-scale optimizer (mixed_float16) needs the loss scaled: Keras 3's unscales the gradients
            # in apply_gradients, tf-keras's is asked to below. Other optimizers scale by 1.
            if hasattr(optimizer, "scale_loss"):
                scaled = optimizer.scale_loss(loss)
            elif hasattr(optimizer, "get_scaled_loss"):
                scaled = optimizer.get_scaled_loss(loss)
            else:
                scaled = loss
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        if hasattr(optimizer, "get_unscaled_gradients"):
            gradients = optimizer.get_unscaled_gradients(gradients)
        optimizer.apply_gradients(zip(gradients, variables))
        return self._report(loss, x, y, y_pred, weight)

    def test_step(self, data: Any) -> dict[str, Any]:
        return self._report(*self._loss_of(data, training=False))

    def _loss_of(self, data: Any, training: bool) -> tuple[tf.Tensor, dict[str, Any], Any, Any, Any]:
        """A Keras batch, `x`, `(x, y)` or `(x, y, sample_weight)`: the loss, the inputs, the labels and the
        outputs they are matched with (transformers' rules, `_matching`), and the weights."""
        x, y, weight = keras.utils.unpack_x_y_sample_weight(data)
        x = dict(x) if isinstance(x, Mapping) else {"input_ids": x}
        if isinstance(weight, Mapping) and len(weight) == 1:  # Keras shapes the weights as the labels
            (weight,) = weight.values()
        if y is None:  # the labels inside the inputs, as a dataset of dicts has them
            y = {k: x.pop(k) for k in self.label_names if k in x} or None
        if not getattr(self, "_internal_loss", True):
            if y is None:
                raise ValueError(
                    f"compile(loss=...) needs labels: none of {list(self.label_names)} is in the inputs and "
                    "no separate labels were given"
                )
            out = self(x, training=training)
            y, y_pred = _matching(y, out)
            return self.compute_loss(x, y, y_pred, weight), x, y, y_pred, weight
        if y is not None and not isinstance(y, Mapping):  # labels by position: the head's label names
            y = dict(zip(self.label_names, y if isinstance(y, (list, tuple)) else [y]))
        out = self(x | (y or {}), training=training)
        if out.loss is None:
            raise ValueError(f"{type(self).__name__} computes no loss of its own: pass compile(loss=...)")
        if weight is None:
            loss = tf.reduce_mean(out.loss)
        else:
            loss = _weighted_mean(out.loss, weight, type(self).__name__)
        y, y_pred = _matching(y, out) if y else (None, None)
        return loss, x, y, y_pred, weight

    def _report(self, loss: tf.Tensor, x: Any, y: Any, y_pred: Any, weight: Any) -> dict[str, Any]:
        self._loss_mean.update_state(loss)
        if y is not None and self._compiled_metrics() is not None:
            return self.compute_metrics(x, y, y_pred, weight)  # every metric's result, the loss's too
        return {"loss": self._loss_mean.result()}

    def _compiled_metrics(self) -> Any:
        """What compile(metrics=...) made: Keras 3's one container, or Keras 2's list of metrics; None without
        any."""
        if _KERAS_3:
            return getattr(self, "_compile_metrics", None)
        compiled = getattr(self, "compiled_metrics", None)  # Keras 2 (tf-keras)
        given = compiled is not None and (compiled._user_metrics or compiled._user_weighted_metrics)
        return compiled if given else None

    def predict_step(self, data: Any) -> dict[str, Any]:
        # Keras stacks a dict of tensors over the batches, not an output dataclass; `predict` rebuilds it.
        x = data[0] if isinstance(data, tuple) else data
        out = self(dict(x) if isinstance(x, Mapping) else {"input_ids": x}, training=False)
        self._output_type = type(out)
        return {k: v for k, v in vars(out).items() if v is not None}

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """Keras' predict, answered as a call is: the head's output (`.logits`...), with numpy arrays."""
        arrays = super().predict(*args, **kwargs)  # traces predict_step, which finds the output type
        return self._output_type(**arrays)

    def predict_on_batch(self, x: Any) -> Any:
        arrays = super().predict_on_batch(x)
        return self._output_type(**arrays)

    @property
    def metrics(self) -> list[Any]:
        # Keras resets the metrics it is given at each epoch, and reports them in this order
        compiled = self._compiled_metrics()
        if compiled is None:
            return [self._loss_mean]
        return [self._loss_mean, *([compiled] if _KERAS_3 else compiled.metrics)]

    # -- checkpoints ----------------------------------------------------------------------------------------------

    def named_variables(self) -> dict[str, tuple[Any, bool]]:
        """{PyTorch state-dict name: (variable, whether the array is transposed)} for every weight."""
        out = self.albert.named_variables(self.state_prefix)
        for attr in self.head_children:
            out |= getattr(self, attr).named_variables(f"{attr}.")
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """The weights as a PyTorch state dict of numpy arrays (transformers' names)."""
        return {
            name: np.ascontiguousarray(v.numpy().T if transposed else v.numpy())
            for name, (v, transposed) in self.named_variables().items()
        }

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Assign the weights of a PyTorch state dict (numpy arrays) that has every name of `state_dict()`."""
        for name, (variable, transposed) in self.named_variables().items():
            array = np.asarray(state[name], dtype=np.float32)
            variable.assign(array.T if transposed else array)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        config: AlbertConfig | None = None,
        output_loading_info: bool = False,
        ignore_mismatched_sizes: bool = False,
        **config_overrides: Any,
    ) -> TFAlbertPreTrainedModel | tuple[TFAlbertPreTrainedModel, dict[str, list[str]]]:
        """Load from a local directory, the HF cache or the hub (`openalbert.checkpoint`): the weights any of
        the PyTorch classes or transformers saved, or the tf_model.h5 of transformers' TF classes. Weights the
        checkpoint lacks (a fresh head) are initialised and reported, as in PyTorch (`output_loading_info=True`
        also returns them by name)."""
        variant, formats = config_overrides.pop("variant", None), weight_formats(config_overrides)
        directory = resolve_weights(
            pretrained_model_name_or_path, variant, formats, **hub_options(config_overrides)
        )
        config = load_config(directory, config, config_overrides, cls.__name__)
        refuse_pruned(config, cls.__name__)
        model = cls(config)
        state = {k: v.float().numpy() for k, v in load_state_dict(directory, variant, formats).items()}
        state, info = merge_checkpoint(
            cls.__name__, directory, state, model.state_dict(), cls.base_model_prefix, ignore_mismatched_sizes
        )
        model.load_state_dict(state)
        return (model, info) if output_loading_info else model

    def serving(self) -> Any:
        """A tf.function for TF Serving, as transformers' TF models have one: a dict of int32 `input_ids`,
        `attention_mask` and `token_type_ids` ((batch, length), or (batch, choices, length) for multiple
        choice) to a dict of the output's tensors."""

        @tf.function(input_signature=[self.input_signature])
        def serve(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            out = self(inputs, training=False)
            return {name: getattr(out, name) for name in out}

        return serve

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        saved_model: bool = False,
        version: int = 1,
        *,
        safe_serialization: bool = True,
        max_shard_size: int | str = "5GB",
    ) -> Path:
        """Write config.json and model.safetensors in PyTorch's layout (transformers' names, the decoder
        tied), which the PyTorch, Flax and TF classes here and transformers' classes all read; safetensors
        shards with an index above `max_shard_size`. With `safe_serialization=False`, tf_model.h5 (or its
        shards) as transformers' TF classes write it, which they read without from_pt (and the classes here
        too). With `saved_model=True` also a TF SavedModel with the `serving` signature in
        saved_model/<version>, as transformers' TF classes write it for TF Serving."""
        if safe_serialization:
            save_directory = save_numpy_state(
                save_directory,
                self.config,
                type(self).__name__.removeprefix("TF"),
                self.state_dict(),
                max_shard_size=max_shard_size,
                replaces="tf",
            )
        else:
            save_directory = write_config(save_directory, self.config, type(self).__name__.removeprefix("TF"))
            write_tf_h5(save_directory, self._h5_layers(), self.name, shard_bytes(max_shard_size))
        if saved_model:
            path = save_directory / "saved_model" / str(version)
            serving = self.serving()
            root: Any = self
            if not _KERAS_3:
                # Keras 2 would also save traces of the model's call for every input shape it was called
                # with; TF Serving needs the signature and the weights alone.
                root = tf.Module()
                root.weights_list, root.serve = list(self.variables), serving
            tf.saved_model.save(root, str(path), signatures={"serving_default": serving})
        return save_directory

    def _h5_layers(self) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
        """The weights by top-level layer, by their full names, as Keras' HDF5 format (and transformers' TF
        classes) store them: the masked-LM head also holds the embeddings it decodes with, and its bias
        again as the decoder's (which transformers' TF head computes with)."""

        def name(weight: Any) -> str:
            return getattr(weight, "path", None) or weight.name.removesuffix(":0")

        layers = []
        for layer in self.layers:
            pairs = [(name(w) + ":0", w.numpy()) for w in layer.weights]
            if isinstance(layer, TFAlbertMLMHead):
                pairs.insert(1, (f"{self.name}/predictions/decoder/bias:0", layer.bias.numpy()))
                pairs += [(n, a) for n, a in dict(layers)["albert"] if f"{self.name}/albert/embeddings/" in n]
            layers.append((layer.name, pairs))
        return layers


def _snake(name: str) -> str:
    """TFAlbertForMaskedLM -> tf_albert_for_masked_lm, the model's Keras name as transformers derives it."""
    out = ""
    for i, c in enumerate(name):
        if c.isupper() and i and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower())):
            out += "_"
        out += c.lower()
    return out


# The order of the call's inputs, for a list of them as the first argument (transformers' TF classes).
_CALL_ORDER = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "head_mask", "inputs_embeds")


# Dataset columns read as the heads' `labels`, as transformers' data collators rename them.
_LABEL_COLUMNS = {"label": "labels", "label_ids": "labels"}


def _collate(features: list[dict[str, Any]], tokenizer: Any = None) -> dict[str, np.ndarray]:
    """A batch of dataset rows as numpy arrays (prepare_tf_dataset's default): "label"/"label_ids" named
    "labels"; with a tokenizer, the token inputs padded by it and label lists padded to their width with
    -100; without one, rows stacked as they are."""
    features = [{_LABEL_COLUMNS.get(k, k): v for k, v in f.items()} for f in features]
    batch: dict[str, np.ndarray] = {}
    if tokenizer is not None:
        padded = [
            {k: v for k, v in f.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            for f in features
        ]
        batch = dict(tokenizer.pad(padded, padding=True, return_tensors="np"))
        width = batch["input_ids"].shape[-1]
        left = getattr(tokenizer, "padding_side", "right") == "left"
        for f in features:
            if isinstance(f.get("labels"), (list, tuple, np.ndarray)) and len(f["labels"]) < width:
                fill = [-100] * (width - len(f["labels"]))
                f["labels"] = fill + list(f["labels"]) if left else list(f["labels"]) + fill
    for key in features[0]:
        if key not in batch:
            try:
                batch[key] = np.array([f[key] for f in features])
                ragged = batch[key].dtype == object  # (numpy before 1.24 makes ragged rows objects)
            except ValueError:
                ragged = True
            if ragged:
                raise ValueError(f"the rows' {key} have different lengths: pass tokenizer= to pad them")
    return batch


def _is_ids(x: Any) -> bool:
    """Whether `x` is a row of plain Python ids (a list, or an int): then its list is the ids, not a list of
    inputs, which are tensors or arrays."""
    return isinstance(x, (int, np.integer, list, tuple))


def _int(x: Any) -> tf.Tensor | None:
    return None if x is None else tf.cast(tf.convert_to_tensor(x), tf.int32)


class TFAlbertModel(TFAlbertPreTrainedModel):
    label_names = ()
    state_prefix = ""


class TFAlbertForPreTraining(TFAlbertPreTrainedModel):
    head_children = ("predictions", "sop_classifier")
    label_names = ("labels", "sentence_order_label")

    def head_init(self) -> None:
        self.predictions = TFAlbertMLMHead(
            self.config, self.albert.embeddings.word_embeddings, name="predictions"
        )
        self.sop_classifier = TFAlbertSOPHead(self.config, name="sop_classifier")

    def head(self, out: BaseModelOutputWithPooling, labels: dict[str, Any], training: bool) -> Any:
        logits = self.predictions(out.last_hidden_state)
        sop = self.sop_classifier(out.pooler_output, training=training)
        loss = None
        # As in transformers, the loss needs both label kinds; -100 marks tokens that are not predicted.
        if "labels" in labels and "sentence_order_label" in labels:
            loss = self.hf_compute_loss(labels, (logits, sop))
        return TFAlbertForPreTrainingOutput(loss, logits, sop, out.hidden_states, out.attentions)

    def hf_compute_loss(self, labels: Mapping[str, Any], logits: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        return _masked_mean_ce(labels["labels"], logits[0]) + _masked_mean_ce(
            labels["sentence_order_label"], logits[1]
        )


class TFAlbertForMaskedLM(TFAlbertPreTrainedModel):
    pooling = False
    head_children = ("predictions",)

    def head_init(self) -> None:
        self.predictions = TFAlbertMLMHead(
            self.config, self.albert.embeddings.word_embeddings, name="predictions"
        )

    def head(self, out: BaseModelOutputWithPooling, labels: dict[str, Any], training: bool) -> Any:
        logits = self.predictions(out.last_hidden_state)
        loss = self.hf_compute_loss(labels["labels"], logits) if "labels" in labels else None
        return TFMaskedLMOutput(loss, logits, out.hidden_states, out.attentions)

    def hf_compute_loss(self, labels: Any, logits: tf.Tensor) -> tf.Tensor:
        return _masked_mean_ce(labels, logits)


class TFAlbertForSequenceClassification(TFAlbertPreTrainedModel):
    head_children = ("classifier",)

    def head_init(self) -> None:
        cfg = self.config
        self.dropout = keras.layers.Dropout(cfg.classifier_dropout_prob or 0.0)
        self.classifier = _Dense(cfg.hidden_size, cfg.num_labels, cfg.initializer_range, name="classifier")

    def head(self, out: BaseModelOutputWithPooling, labels: dict[str, Any], training: bool) -> Any:
        logits = self.classifier(self.dropout(out.pooler_output, training=training))
        loss = self.hf_compute_loss(labels["labels"], logits) if "labels" in labels else None
        return TFSequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions)

    def hf_compute_loss(self, labels: Any, logits: tf.Tensor) -> tf.Tensor:
        """Per example: the squared error (regression), the multi-label loss of PyTorch's classes (BCE; float
        multi-hot labels), else the cross-entropy."""
        y = tf.convert_to_tensor(labels)
        logits32 = tf.cast(logits, tf.float32)
        n = self.config.num_labels
        if n == 1 or self.config.problem_type == "regression":
            return tf.reduce_mean(tf.square(logits32 - tf.reshape(tf.cast(y, tf.float32), (-1, n))), -1)
        if self.config.problem_type == "multi_label_classification" or (
            y.shape.rank == 2 and y.dtype.is_floating
        ):
            # (transformers' TF classes have no multi-label loss)
            return tf.reduce_mean(
                tf.nn.sigmoid_cross_entropy_with_logits(tf.cast(y, tf.float32), logits32), -1
            )
        return _sparse_ce(tf.reshape(y, (-1,)), logits)


class TFAlbertForTokenClassification(TFAlbertPreTrainedModel):
    pooling = False
    head_children = ("classifier",)

    def head_init(self) -> None:
        cfg = self.config
        p = (
            cfg.classifier_dropout_prob
            if cfg.classifier_dropout_prob is not None
            else cfg.hidden_dropout_prob
        )
        self.dropout = keras.layers.Dropout(p)
        self.classifier = _Dense(cfg.hidden_size, cfg.num_labels, cfg.initializer_range, name="classifier")

    def head(self, out: BaseModelOutputWithPooling, labels: dict[str, Any], training: bool) -> Any:
        logits = self.classifier(self.dropout(out.last_hidden_state, training=training))
        loss = self.hf_compute_loss(labels["labels"], logits) if "labels" in labels else None
        return TFTokenClassifierOutput(loss, logits, out.hidden_states, out.attentions)

    def hf_compute_loss(self, labels: Any, logits: tf.Tensor) -> tf.Tensor:
        y = tf.cast(tf.convert_to_tensor(labels), tf.int32)
        return _masked_mean_ce(y, logits, keep=y >= 0)


class TFAlbertForQuestionAnswering(TFAlbertPreTrainedModel):
    pooling = False
    head_children = ("qa_outputs",)
    label_names = ("start_positions", "end_positions")

    def head_init(self) -> None:
        cfg = self.config
        self.qa_outputs = _Dense(cfg.hidden_size, cfg.num_labels, cfg.initializer_range, name="qa_outputs")

    def head(self, out: BaseModelOutputWithPooling, labels: dict[str, Any], training: bool) -> Any:
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        start, end = logits[..., 0], logits[..., 1]
        loss = None
        if "start_positions" in labels and "end_positions" in labels:
            positions = {"start_position": labels["start_positions"], "end_position": labels["end_positions"]}
            loss = self.hf_compute_loss(positions, (start, end))
        return TFQuestionAnsweringModelOutput(loss, start, end, out.hidden_states, out.attentions)

    def hf_compute_loss(self, labels: Mapping[str, Any], logits: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        """Per example, the mean of the start and end cross-entropies; `labels` by transformers' names
        (start_position, end_position)."""
        T = tf.shape(logits[0])[1]

        def part(positions: Any, logits: tf.Tensor) -> tf.Tensor:
            # A position outside the window (an answer cut off by truncation) adds nothing, as the PyTorch
            # classes ignore it; transformers' TF loss has no such case and fails on it.
            positions = tf.reshape(_int(positions), (-1,))
            inside = (positions >= 0) & (positions < T)
            losses = _sparse_ce(tf.clip_by_value(positions, 0, T - 1), logits)
            return tf.where(inside, losses, tf.zeros_like(losses))

        return (part(labels["start_position"], logits[0]) + part(labels["end_position"], logits[1])) / 2.0


class TFAlbertForMultipleChoice(TFAlbertPreTrainedModel):
    head_children = ("classifier",)

    def head_init(self) -> None:
        cfg = self.config
        # (transformers' TF and Flax classes drop out at the hidden rate here, its PyTorch class at the
        # classifier's: each framework trains as transformers' does)
        self.dropout = keras.layers.Dropout(cfg.hidden_dropout_prob)
        self.classifier = _Dense(cfg.hidden_size, 1, cfg.initializer_range, name="classifier")

    def head_call(
        self,
        inputs: list[tf.Tensor | None],
        head_mask: Any,
        embeds: tf.Tensor | None,
        output_attentions: bool,
        output_hidden_states: bool,
        labels: dict[str, Any],
        training: bool,
    ) -> Any:
        first = inputs[0] if inputs[0] is not None else embeds[..., 0]
        C, T = tf.shape(first)[1], tf.shape(first)[2]
        flat = [None if x is None else tf.reshape(x, (-1, T)) for x in inputs]  # (B*C, T)
        if embeds is not None:
            embeds = tf.reshape(embeds, (-1, T, embeds.shape[-1]))
        out = self.albert(
            *flat, head_mask, embeds, output_attentions, output_hidden_states, training=training
        )
        logits = tf.reshape(self.classifier(self.dropout(out.pooler_output, training=training)), (-1, C))
        loss = self.hf_compute_loss(labels["labels"], logits) if "labels" in labels else None
        return TFMultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions)

    def hf_compute_loss(self, labels: Any, logits: tf.Tensor) -> tf.Tensor:
        return _sparse_ce(tf.reshape(_int(labels), (-1,)), logits)
