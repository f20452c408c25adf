"""The ALBERT model family in JAX/Flax, reading and writing the same checkpoints as the PyTorch classes.

The classes, their call signatures, outputs and parameter trees are transformers 4.57.1's Flax ALBERT
(`FlaxAlbertModel` and the six heads, removed from transformers v5), so code written for those runs on these.
Beyond them: relative position embeddings ("relative_key", "relative_key_query"), which transformers'
Flax classes ignore, and checkpoints read and written as `model.safetensors` in PyTorch's layout, so one
directory serves PyTorch, transformers and Flax alike. Numbers match `openalbert.modeling` (the PyTorch
model, itself held to transformers) to 1e-5 in fp32.

A model is a `flax.linen` module (`model.module`) plus its parameters (`model.params`, a nested dict named
as transformers' Flax models name it); `model(input_ids, ...)` runs the module jitted on those parameters.
Requires `pip install openalbert[flax]` (jax and flax).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

try:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from flax import struct
    from flax.traverse_util import flatten_dict, unflatten_dict
except ImportError as e:
    raise ImportError(
        f"openalbert's Flax classes need JAX and Flax: pip install 'openalbert[flax]' ({e})"
    ) from e

from openalbert.checkpoint import (
    _IGNORED_KEYS,
    TIED_DECODER,
    hub_options,
    load_config,
    load_state_dict,
    merge_checkpoint,
    refuse_pruned,
    resolve_weights,
    save_numpy_state,
    untied_decoder_refused,
    weight_formats,
)
from openalbert.config import AlbertConfig, check_albert_config, converts_foreign_configs, refuse_upload
from openalbert.modeling import ModelOutput, check_id_range, check_length

logger = logging.getLogger(__name__)


ACT2FN: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_fast": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "mish": lambda x: x * jnp.tanh(jax.nn.softplus(x)),
    "linear": lambda x: x,
    "gelu_python": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_accurate": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_python_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_10": lambda x: jnp.clip(jax.nn.gelu(x, approximate=False), -10.0, 10.0),
    "relu6": jax.nn.relu6,
    "relu2": lambda x: jnp.square(jax.nn.relu(x)),
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.01),
    "laplace": lambda x: 0.5 * (1.0 + jax.lax.erf((x - 0.707107) / (0.282095 * math.sqrt(2.0)))),
}


# ---- outputs -----------------------------------------------------------------------------------------


@struct.dataclass
class FlaxBaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: jax.Array | None = None
    pooler_output: jax.Array | None = None
    hidden_states: tuple[jax.Array, ...] | None = None
    attentions: tuple[jax.Array, ...] | None = None


@struct.dataclass
class FlaxAlbertForPreTrainingOutput(ModelOutput):
    prediction_logits: jax.Array | None = None
    sop_logits: jax.Array | None = None
    hidden_states: tuple[jax.Array, ...] | None = None
    attentions: tuple[jax.Array, ...] | None = None


@struct.dataclass
class FlaxMaskedLMOutput(ModelOutput):
    logits: jax.Array | None = None
    hidden_states: tuple[jax.Array, ...] | None = None
    attentions: tuple[jax.Array, ...] | None = None


FlaxSequenceClassifierOutput = FlaxTokenClassifierOutput = FlaxMultipleChoiceModelOutput = FlaxMaskedLMOutput


@struct.dataclass
class FlaxQuestionAnsweringModelOutput(ModelOutput):
    start_logits: jax.Array | None = None
    end_logits: jax.Array | None = None
    hidden_states: tuple[jax.Array, ...] | None = None
    attentions: tuple[jax.Array, ...] | None = None


# ---- the encoder -------------------------------------------------------------------------------------------


def _dense(config: AlbertConfig, features: int, dtype: jnp.dtype, name: str | None = None) -> nn.Dense:
    init = jax.nn.initializers.normal(config.initializer_range)
    return nn.Dense(features, dtype=dtype, kernel_init=init, name=name)


def _layer_norm(config: AlbertConfig, dtype: jnp.dtype, name: str | None = None) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, name=name)


class FlaxAlbertEmbeddings(nn.Module):
    """Word + token-type (+ absolute position) embeddings of size E, then LayerNorm and dropout."""

    config: AlbertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        cfg, init = self.config, jax.nn.initializers.normal(self.config.initializer_range)
        self.word_embeddings = nn.Embed(cfg.vocab_size, cfg.embedding_size, embedding_init=init)
        self.position_embeddings = nn.Embed(
            cfg.max_position_embeddings, cfg.embedding_size, embedding_init=init
        )
        self.token_type_embeddings = nn.Embed(cfg.type_vocab_size, cfg.embedding_size, embedding_init=init)
        self.LayerNorm = _layer_norm(cfg, self.dtype)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def __call__(
        self, input_ids: jax.Array, token_type_ids: jax.Array, position_ids: jax.Array, deterministic: bool
    ) -> jax.Array:
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        # Looked up under relative positions too, so that its parameter exists: checkpoints hold it.
        position = self.position_embeddings(position_ids)
        if self.config.position_embedding_type == "absolute":
            embeddings = embeddings + position
        embeddings = self.LayerNorm(embeddings.astype(self.dtype))
        return self.dropout(embeddings, deterministic=deterministic)  # (B, T, E)


class FlaxAlbertAttention(nn.Module):
    """Multi-head self-attention with absolute or relative positions, then dense, residual, LayerNorm."""

    config: AlbertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        cfg = self.config
        self.query, self.key, self.value, self.dense = (
            _dense(cfg, cfg.hidden_size, self.dtype) for _ in range(4)
        )
        self.LayerNorm = _layer_norm(cfg, self.dtype)
        self.attention_dropout = nn.Dropout(cfg.attention_probs_dropout_prob)
        self.output_dropout = nn.Dropout(cfg.hidden_dropout_prob)
        if cfg.position_embedding_type != "absolute":
            self.distance_embedding = nn.Embed(
                2 * cfg.max_position_embeddings - 1,
                cfg.head_dim,
                embedding_init=jax.nn.initializers.normal(cfg.initializer_range),
            )

    def __call__(
        self, hidden: jax.Array, mask: jax.Array, deterministic: bool
    ) -> tuple[jax.Array, jax.Array]:
        """(B, T, H) -> (B, T, H) and the attention probabilities (B, nh, T, T); `mask` is additive."""
        cfg = self.config
        B, T, _ = hidden.shape

        def heads(x: jax.Array) -> jax.Array:  # (B, T, H) -> (B, nh, T, hd)
            return x.reshape(B, T, cfg.num_attention_heads, cfg.head_dim).transpose(0, 2, 1, 3)

        q, k, v = heads(self.query(hidden)), heads(self.key(hidden)), heads(self.value(hidden))
        scores = q @ k.swapaxes(-1, -2) / math.sqrt(cfg.head_dim)  # (B, nh, T, T)
        if cfg.position_embedding_type != "absolute":
            # As in the original, the relative scores are added after the 1/sqrt(d) scaling.
            positions = jnp.arange(T)
            rel = self.distance_embedding(positions[:, None] - positions + cfg.max_position_embeddings - 1)
            rel = rel.astype(q.dtype)  # (T, T, hd): query l, key r
            scores = scores + jnp.einsum("bhld,lrd->bhlr", q, rel)
            if cfg.position_embedding_type == "relative_key_query":
                scores = scores + jnp.einsum("bhrd,lrd->bhlr", k, rel)
        probs = jax.nn.softmax((scores + mask).astype(jnp.float32), axis=-1).astype(self.dtype)
        context = self.attention_dropout(probs, deterministic=deterministic) @ v
        context = context.transpose(0, 2, 1, 3).reshape(B, T, -1)  # (B, T, H)
        out = self.output_dropout(self.dense(context), deterministic=deterministic)
        return self.LayerNorm(hidden + out), probs


class FlaxAlbertLayer(nn.Module):
    """Attention, then a feed-forward block with residual and LayerNorm."""

    config: AlbertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        cfg = self.config
        self.attention = FlaxAlbertAttention(cfg, self.dtype)
        self.ffn = _dense(cfg, cfg.intermediate_size, self.dtype)
        self.ffn_output = _dense(cfg, cfg.hidden_size, self.dtype)
        self.full_layer_layer_norm = _layer_norm(cfg, self.dtype)
        # The original applies dropout to the feed-forward output (openalbert.modeling.AlbertLayer too).
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def __call__(
        self, hidden: jax.Array, mask: jax.Array, deterministic: bool
    ) -> tuple[jax.Array, jax.Array]:
        attended, probs = self.attention(hidden, mask, deterministic)
        ffn = self.ffn_output(ACT2FN[self.config.hidden_act](self.ffn(attended)))
        return self.full_layer_layer_norm(attended + self.dropout(ffn, deterministic=deterministic)), probs


class FlaxAlbertLayerStack(nn.Module):
    """Layers run in sequence, named "0", "1", ... as a PyTorch ModuleList names them in a state dict."""

    config: AlbertConfig
    dtype: jnp.dtype = jnp.float32
    size: int = 1

    def setup(self) -> None:
        self.layers = [FlaxAlbertLayer(self.config, self.dtype, name=str(j)) for j in range(self.size)]

    def __call__(
        self, hidden: jax.Array, mask: jax.Array, deterministic: bool
    ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        all_probs = []
        for layer in self.layers:
            hidden, probs = layer(hidden, mask, deterministic)
            all_probs.append(probs)
        return hidden, tuple(all_probs)


class FlaxAlbertLayerGroup(nn.Module):
    """`inner_group_num` layers with their own weights, run in sequence; a group is the unit of sharing."""

    config: AlbertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        self.albert_layers = FlaxAlbertLayerStack(self.config, self.dtype, self.config.inner_group_num)

    def __call__(
        self, hidden: jax.Array, mask: jax.Array, deterministic: bool
    ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        return self.albert_layers(hidden, mask, deterministic)


class FlaxAlbertGroups(nn.Module):
    """The `num_hidden_groups` groups of weights, named "0", "1", ...; calling it runs group `g`."""

    config: AlbertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        self.groups = [
            FlaxAlbertLayerGroup(self.config, self.dtype, name=str(g))
            for g in range(self.config.num_hidden_groups)
        ]

    def __call__(
        self, g: int, hidden: jax.Array, mask: jax.Array, deterministic: bool
    ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        return self.groups[g](hidden, mask, deterministic)


class FlaxAlbertTransformer(nn.Module):
    """Map E -> H, then run `num_hidden_layers` layers through the shared groups."""

    config: AlbertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        self.embedding_hidden_mapping_in = _dense(self.config, self.config.hidden_size, self.dtype)
        self.albert_layer_groups = FlaxAlbertGroups(self.config, self.dtype)

    def __call__(
        self, embeddings: jax.Array, mask: jax.Array, deterministic: bool
    ) -> tuple[jax.Array, tuple[jax.Array, ...], tuple[jax.Array, ...]]:
        cfg = self.config
        hidden = self.embedding_hidden_mapping_in(embeddings)  # (B, T, H)
        all_hidden, all_probs = [hidden], []
        for i in range(cfg.num_hidden_layers):
            # The whole of ALBERT's cross-layer sharing: layer i reuses the weights of group g.
            g = cfg.group_of(i)
            hidden, probs = self.albert_layer_groups(g, hidden, mask, deterministic)
            all_hidden.append(hidden)
            all_probs += probs
        return hidden, tuple(all_hidden), tuple(all_probs)


class _Called(nn.Module):
    """transformers' Flax module call, which the encoder and every head module take (`module.apply({"params":
    p}, input_ids, attention_mask, token_type_ids, position_ids, deterministic=True, output_attentions=False,
    output_hidden_states=False, return_dict=True)`); each says what it computes in `head`."""

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,
        position_ids: jax.Array | None = None,
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ) -> Any:
        inputs = _filled(input_ids, attention_mask, token_type_ids, position_ids)
        out = self.head(inputs, deterministic, output_attentions, output_hidden_states)
        return out if return_dict else out.to_tuple()

    def head(
        self, inputs: tuple[jax.Array, ...], deterministic: bool, attentions: bool, hidden_states: bool
    ) -> Any:
        raise NotImplementedError


class FlaxAlbertModule(_Called):
    """The ALBERT encoder: hidden states for every token and a pooled [CLS] vector."""

    config: AlbertConfig
    dtype: jnp.dtype = jnp.float32
    add_pooling_layer: bool = True

    def setup(self) -> None:
        self.embeddings = FlaxAlbertEmbeddings(self.config, self.dtype)
        self.encoder = FlaxAlbertTransformer(self.config, self.dtype)
        if self.add_pooling_layer:
            self.pooler = _dense(self.config, self.config.hidden_size, self.dtype)

    def head(
        self, inputs: tuple[jax.Array, ...], deterministic: bool, attentions: bool, hidden_states: bool
    ) -> FlaxBaseModelOutputWithPooling:
        input_ids, attention_mask, token_type_ids, position_ids = inputs
        embeddings = self.embeddings(input_ids, token_type_ids, position_ids, deterministic)
        # (B, 1, 1, T) additive mask over the keys, as the PyTorch model writes it
        mask = (1.0 - attention_mask[:, None, None, :].astype(self.dtype)) * jnp.finfo(self.dtype).min
        hidden, all_hidden, all_probs = self.encoder(embeddings, mask, deterministic)
        pooled = jnp.tanh(self.pooler(hidden[:, 0])) if self.add_pooling_layer else None
        return FlaxBaseModelOutputWithPooling(
            last_hidden_state=hidden,
            pooler_output=pooled,
            hidden_states=all_hidden if hidden_states else None,
            attentions=all_probs if attentions else None,
        )


# ---- heads ---------------------------------------------------------------------------------------------------


class FlaxAlbertMLMHead(nn.Module):
    """H -> E (dense, activation, LayerNorm) -> vocabulary; the decoder is the word embedding, transposed,
    plus `predictions.bias`."""

    config: AlbertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        untied_decoder_refused(self.config, "Flax")
        self.dense = _dense(self.config, self.config.embedding_size, self.dtype)
        self.LayerNorm = _layer_norm(self.config, self.dtype)
        self.bias = self.param("bias", jax.nn.initializers.zeros, (self.config.vocab_size,))

    def __call__(self, hidden: jax.Array, word_embeddings: jax.Array) -> jax.Array:
        hidden = self.LayerNorm(ACT2FN[self.config.hidden_act](self.dense(hidden)))
        # the product in the compute dtype; the fp32 bias added as it is, so the logits come out in fp32, as
        # transformers' Flax head gives them (a softmax over 30k tokens wants the precision)
        return hidden @ word_embeddings.T.astype(self.dtype) + self.bias  # (B, T, V)


class FlaxAlbertSOPHead(nn.Module):
    """Sentence-order prediction from the pooled [CLS] vector: 0 = in order, 1 = swapped."""

    config: AlbertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        self.dropout = nn.Dropout(self.config.classifier_dropout_prob or 0.0)
        self.classifier = _dense(self.config, 2, self.dtype)

    def __call__(self, pooled: jax.Array, deterministic: bool) -> jax.Array:
        return self.classifier(self.dropout(pooled, deterministic=deterministic))


def _word_embeddings(module: nn.Module) -> jax.Array:
    return module.albert.variables["params"]["embeddings"]["word_embeddings"]["embedding"]


class _HeadModule(_Called):
    """What every head module shares: the encoder under "albert"; a head says what it makes of its output
    in `head`."""

    config: AlbertConfig
    dtype: jnp.dtype = jnp.float32
    pooling = True  # whether the head reads the pooled [CLS] vector

    def setup(self) -> None:
        self.albert = FlaxAlbertModule(self.config, self.dtype, add_pooling_layer=self.pooling)
        self.head_setup()

    def head_setup(self) -> None:
        raise NotImplementedError


def _filled(*inputs: jax.Array | None) -> tuple[jax.Array, ...]:
    """input_ids, attention_mask, token_type_ids, position_ids with the defaults of a call for those left out:
    every token attended, one segment, positions from 0."""
    ids, mask, types, positions = inputs
    if ids is None:  # (transformers' Flax ALBERT takes no inputs_embeds either)
        raise ValueError("input_ids is required: the Flax classes take token ids (B, T)")
    return (
        ids,
        jnp.ones_like(ids) if mask is None else mask,
        jnp.zeros_like(ids) if types is None else types,
        _positions(ids) if positions is None else positions,
    )


class FlaxAlbertForPreTrainingModule(_HeadModule):
    def head_setup(self) -> None:
        self.predictions = FlaxAlbertMLMHead(self.config, self.dtype)
        self.sop_classifier = FlaxAlbertSOPHead(self.config, self.dtype)

    def head(self, inputs: tuple[jax.Array, ...], deterministic: bool, *flags: bool) -> Any:
        out = self.albert(*inputs, deterministic, *flags)
        return FlaxAlbertForPreTrainingOutput(
            prediction_logits=self.predictions(out.last_hidden_state, _word_embeddings(self)),
            sop_logits=self.sop_classifier(out.pooler_output, deterministic),
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )


class FlaxAlbertForMaskedLMModule(_HeadModule):
    pooling = False

    def head_setup(self) -> None:
        self.predictions = FlaxAlbertMLMHead(self.config, self.dtype)

    def head(self, inputs: tuple[jax.Array, ...], deterministic: bool, *flags: bool) -> Any:
        out = self.albert(*inputs, deterministic, *flags)
        logits = self.predictions(out.last_hidden_state, _word_embeddings(self))
        return FlaxMaskedLMOutput(logits, out.hidden_states, out.attentions)


class FlaxAlbertForSequenceClassificationModule(_HeadModule):
    def head_setup(self) -> None:
        p = self.config.classifier_dropout_prob
        self.dropout = nn.Dropout(self.config.hidden_dropout_prob if p is None else p)
        self.classifier = _dense(self.config, self.config.num_labels, self.dtype)

    def head(self, inputs: tuple[jax.Array, ...], deterministic: bool, *flags: bool) -> Any:
        out = self.albert(*inputs, deterministic, *flags)
        logits = self.classifier(self.dropout(out.pooler_output, deterministic=deterministic))
        return FlaxSequenceClassifierOutput(logits, out.hidden_states, out.attentions)


class FlaxAlbertForTokenClassificationModule(_HeadModule):
    pooling = False

    def head_setup(self) -> None:
        cfg = self.config
        p = (
            cfg.classifier_dropout_prob
            if cfg.classifier_dropout_prob is not None
            else cfg.hidden_dropout_prob
        )
        self.dropout = nn.Dropout(p)
        self.classifier = _dense(cfg, cfg.num_labels, self.dtype)

    def head(self, inputs: tuple[jax.Array, ...], deterministic: bool, *flags: bool) -> Any:
        out = self.albert(*inputs, deterministic, *flags)
        logits = self.classifier(self.dropout(out.last_hidden_state, deterministic=deterministic))
        return FlaxTokenClassifierOutput(logits, out.hidden_states, out.attentions)


class FlaxAlbertForQuestionAnsweringModule(_HeadModule):
    pooling = False

    def head_setup(self) -> None:
        self.qa_outputs = _dense(self.config, self.config.num_labels, self.dtype)

    def head(self, inputs: tuple[jax.Array, ...], deterministic: bool, *flags: bool) -> Any:
        out = self.albert(*inputs, deterministic, *flags)
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        return FlaxQuestionAnsweringModelOutput(
            logits[..., 0], logits[..., 1], out.hidden_states, out.attentions
        )


class FlaxAlbertForMultipleChoiceModule(_HeadModule):
    def head_setup(self) -> None:
        # (transformers' TF and Flax classes drop out at the hidden rate here, its PyTorch class at the
        # classifier's: each framework trains as transformers' does)
        self.dropout = nn.Dropout(self.config.hidden_dropout_prob)
        self.classifier = _dense(self.config, 1, self.dtype)

    def head(self, inputs: tuple[jax.Array, ...], deterministic: bool, *flags: bool) -> Any:
        B, C, T = inputs[0].shape
        flat = [x.reshape(B * C, T) for x in inputs]  # ids, mask, token types, positions
        out = self.albert(*flat, deterministic, *flags)
        logits = self.classifier(self.dropout(out.pooler_output, deterministic=deterministic)).reshape(B, C)
        return FlaxMultipleChoiceModelOutput(logits, out.hidden_states, out.attentions)


# ---- checkpoints: PyTorch state-dict names <-> Flax parameter trees ---------------------------------------------

# Modules whose "weight" is not a linear layer's: what kind of module each leaf name is.
_LEAF_KINDS = {
    "word_embeddings": "embedding",
    "position_embeddings": "embedding",
    "token_type_embeddings": "embedding",
    "distance_embedding": "embedding",
    "LayerNorm": "norm",
    "full_layer_layer_norm": "norm",
}
# (kind, PyTorch parameter) -> (Flax parameter, whether the array is transposed between the two)
_PARAMS = {
    ("embedding", "weight"): ("embedding", False),
    ("norm", "weight"): ("scale", False),
    ("norm", "bias"): ("bias", False),
    ("linear", "weight"): ("kernel", True),
    ("linear", "bias"): ("bias", False),
}
_FROM_FLAX = {(kind, flax): (torch, transposed) for (kind, torch), (flax, transposed) in _PARAMS.items()}


def to_flax_params(state: dict[str, np.ndarray]) -> dict[str, Any]:
    """A PyTorch state dict (numpy arrays, transformers' names) as a Flax parameter tree."""
    flat = {}
    for name, array in state.items():
        *path, param = name.split(".")
        kind = _LEAF_KINDS.get(path[-1], "linear") if path else "linear"
        if name in TIED_DECODER or _IGNORED_KEYS.search(name):
            continue
        if (kind, param) not in _PARAMS:
            raise ValueError(f"no Flax parameter for the PyTorch weight {name}")
        flax_param, transposed = _PARAMS[kind, param]
        flat[(*path, flax_param)] = array.T if transposed else array
    return unflatten_dict(flat)


def to_state_dict(params: dict[str, Any]) -> dict[str, np.ndarray]:
    """A Flax parameter tree as a PyTorch state dict of numpy arrays (transformers' names)."""
    state = {}
    for (*path, flax_param), array in flatten_dict(params).items():
        kind = _LEAF_KINDS.get(path[-1], "linear") if path else "linear"
        torch_param, transposed = _FROM_FLAX[kind, flax_param]
        array = np.asarray(array)
        state[".".join((*path, torch_param))] = np.ascontiguousarray(array.T if transposed else array)
    return state


# ---- the model classes ----------------------------------------------------------------------------------------


class FlaxAlbertPreTrainedModel:
    """A module and its parameters: transformers' FlaxPreTrainedModel for ALBERT, with `from_pretrained` and
    `save_pretrained` on the same checkpoint directories as the PyTorch classes."""

    module_class: type[nn.Module] = FlaxAlbertModule
    base_model_prefix = "albert"

    @converts_foreign_configs
    def __init__(
        self,
        config: AlbertConfig,
        input_shape: tuple[int, ...] = (1, 1),
        seed: int = 0,
        dtype: jnp.dtype = jnp.float32,
        _do_init: bool = True,
    ) -> None:
        check_albert_config(config)
        config.validate()
        self.config, self.dtype = config, dtype
        self.module = self.module_class(config=config, dtype=dtype)
        # (transformers' names: what init_weights is given in its _do_init=False recipe)
        self.key, self.input_shape = jax.random.PRNGKey(seed), input_shape
        self._params = self.init_weights(self.key, input_shape) if _do_init else None
        self._apply = jax.jit(self.module.apply, static_argnums=(5, 6, 7))

    @property
    def params(self) -> dict[str, Any]:
        if self._params is None:
            raise ValueError("this model was made with _do_init=False: pass params= or set model.params")
        return self._params

    @params.setter
    def params(self, params: dict[str, Any]) -> None:
        self._params = params

    def to_bf16(self, params: dict[str, Any], mask: Any | None = None) -> dict[str, Any]:
        """`params` with their floating-point leaves in bf16 (where `mask`, a tree of bools, says True), as
        transformers' Flax models cast them; pass the result as `params=` or set `model.params`."""
        return _cast(params, jnp.bfloat16, mask)

    def to_fp16(self, params: dict[str, Any], mask: Any | None = None) -> dict[str, Any]:
        """As `to_bf16`, in fp16."""
        return _cast(params, jnp.float16, mask)

    def to_fp32(self, params: dict[str, Any], mask: Any | None = None) -> dict[str, Any]:
        """As `to_bf16`, back to fp32."""
        return _cast(params, jnp.float32, mask)

    def init_weights(
        self, rng: jax.Array, input_shape: tuple[int, ...], params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Random parameters, as the PyTorch classes initialise them (normal(initializer_range), LayerNorm
        ones and zeros, biases zero); with `params`, those, and random ones only where they lack some (as
        transformers fills a model loaded with _do_init=False)."""
        inputs = _filled(jnp.zeros(input_shape, dtype="i4"), None, None, None)
        params_rng, dropout_rng = jax.random.split(rng)
        fresh = self.module.init({"params": params_rng, "dropout": dropout_rng}, *inputs, True)["params"]
        if params is None:
            return fresh
        return unflatten_dict(flatten_dict(fresh) | flatten_dict(params))

    @property
    def params_shape_tree(self) -> dict[str, Any]:
        """The parameters' shapes and dtypes (jax.ShapeDtypeStruct leaves), computed without making them."""
        return jax.eval_shape(lambda key: self.init_weights(key, self.input_shape), self.key)

    @property
    def required_params(self) -> set[tuple[str, ...]]:
        """The paths of every parameter the model needs."""
        return set(flatten_dict(self.params_shape_tree))

    push_to_hub = refuse_upload

    def __call__(
        self,
        input_ids: Any,
        attention_mask: Any | None = None,
        token_type_ids: Any | None = None,
        position_ids: Any | None = None,
        params: dict[str, Any] | None = None,
        dropout_rng: jax.Array | None = None,
        train: bool = False,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> Any:
        """transformers' Flax call: numpy or JAX int arrays (B, T) ((B, C, T) for multiple choice); dropout
        only with `train=True`, which needs `dropout_rng`."""
        ids, mask, types, positions = _filled(
            *(
                None if x is None else jnp.asarray(x, dtype="i4")
                for x in (input_ids, attention_mask, token_type_ids, position_ids)
            )
        )
        self._check(ids)
        if train and dropout_rng is None:
            raise ValueError("train=True applies dropout: pass dropout_rng (a jax.random.PRNGKey)")
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        out = self._apply(
            {"params": self.params if params is None else params},
            ids,
            mask,
            types,
            positions,
            not train,
            bool(output_attentions),
            bool(output_hidden_states),
            rngs={"dropout": dropout_rng} if train else {},
        )
        return out if return_dict else out.to_tuple()

    def _check(self, ids: jax.Array) -> None:
        """The errors a user can cause, named, before JAX clips an out-of-range id silently."""
        if ids.size == 0:
            raise ValueError(f"empty batch: input shape is {tuple(ids.shape)}")
        check_length(ids.shape[-1], self.config)
        try:
            lo, hi = int(ids.min()), int(ids.max())
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError):
            return  # traced under the caller's jax.jit: the values are not known here
        check_id_range("input_ids", lo, hi, self.config.vocab_size)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        config: AlbertConfig | None = None,
        dtype: jnp.dtype = jnp.float32,
        seed: int = 0,
        output_loading_info: bool = False,
        ignore_mismatched_sizes: bool = False,
        _do_init: bool = True,
        **config_overrides: Any,
    ) -> Any:
        """Load from a local directory, the HF cache or the hub (`openalbert.checkpoint`): the weights any
        of the PyTorch classes or transformers saved, or the flax_model.msgpack of transformers' Flax classes. Weights the checkpoint lacks (a fresh head) are
        initialised and reported, as in PyTorch (`output_loading_info=True` also returns them by name).
        Parameters stay fp32; `dtype` is the computation's. With `_do_init=False`, as in transformers, the
        model keeps no parameters and they come back beside it: `model, params = ...from_pretrained(...)`
        (then the loading info third), to pass as `params=`."""
        variant, formats = config_overrides.pop("variant", None), weight_formats(config_overrides)
        directory = resolve_weights(
            pretrained_model_name_or_path, variant, formats, **hub_options(config_overrides)
        )
        config = load_config(directory, config, config_overrides, cls.__name__)
        refuse_pruned(config, cls.__name__)
        model = cls(config, seed=seed, dtype=dtype)
        state = {k: v.float().numpy() for k, v in load_state_dict(directory, variant, formats).items()}
        state, info = merge_checkpoint(
            cls.__name__,
            directory,
            state,
            to_state_dict(model.params),
            cls.base_model_prefix,
            ignore_mismatched_sizes,
        )
        params = jax.tree_util.tree_map(jnp.asarray, to_flax_params(state))
        if not _do_init:
            model._params = None
            return (model, params, info) if output_loading_info else (model, params)
        model.params = params
        return (model, info) if output_loading_info else model

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        params: dict[str, Any] | None = None,
        *,
        safe_serialization: bool = True,
        max_shard_size: int | str = "5GB",
    ) -> Path:
        """Write config.json and model.safetensors in PyTorch's layout (transformers' names, the decoder
        tied), which the PyTorch classes, transformers and `from_pretrained` here all read; the model's
        parameters, or `params`. Safetensors shards with an index above `max_shard_size`, pytorch_model.bin
        with `safe_serialization=False`."""
        params = self.params if params is None else params
        state = {k: np.asarray(v, dtype=np.float32) for k, v in to_state_dict(params).items()}
        return save_numpy_state(
            save_directory,
            self.config,
            type(self).__name__.removeprefix("Flax"),
            state,
            safe_serialization=safe_serialization,
            max_shard_size=max_shard_size,
            replaces="flax",
        )


def _cast(params: dict[str, Any], dtype: jnp.dtype, mask: Any | None) -> dict[str, Any]:
    def cast(leaf: jax.Array, selected: bool = True) -> jax.Array:
        return leaf.astype(dtype) if selected and jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    return (
        jax.tree_util.tree_map(cast, params) if mask is None else jax.tree_util.tree_map(cast, params, mask)
    )


def read_flax_msgpack(path: Path) -> dict[str, np.ndarray]:
    """The flax_model.msgpack that transformers' Flax classes save, as a PyTorch state dict of fp32 arrays."""
    from flax.serialization import msgpack_restore

    try:
        params = msgpack_restore(path.read_bytes())
    except Exception as e:
        raise ValueError(
            f"{path} is corrupt or truncated ({type(e).__name__}: {e}); re-download or re-save it"
        ) from None
    return {k: v.astype(np.float32) for k, v in to_state_dict(params).items()}


def _positions(ids: jax.Array) -> jax.Array:
    return jnp.broadcast_to(jnp.arange(ids.shape[-1], dtype="i4"), ids.shape)


class FlaxAlbertModel(FlaxAlbertPreTrainedModel):
    module_class = FlaxAlbertModule


class FlaxAlbertForPreTraining(FlaxAlbertPreTrainedModel):
    module_class = FlaxAlbertForPreTrainingModule


class FlaxAlbertForMaskedLM(FlaxAlbertPreTrainedModel):
    module_class = FlaxAlbertForMaskedLMModule


class FlaxAlbertForSequenceClassification(FlaxAlbertPreTrainedModel):
    module_class = FlaxAlbertForSequenceClassificationModule


class FlaxAlbertForTokenClassification(FlaxAlbertPreTrainedModel):
    module_class = FlaxAlbertForTokenClassificationModule


class FlaxAlbertForQuestionAnswering(FlaxAlbertPreTrainedModel):
    module_class = FlaxAlbertForQuestionAnsweringModule


class FlaxAlbertForMultipleChoice(FlaxAlbertPreTrainedModel):
    module_class = FlaxAlbertForMultipleChoiceModule

    def init_weights(self, rng: jax.Array, input_shape: tuple[int, ...]) -> dict[str, Any]:
        return super().init_weights(rng, (1, 1, *input_shape[-1:]))
