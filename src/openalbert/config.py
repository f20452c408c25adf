"""AlbertConfig: the typed configuration of an ALBERT model, its named presets, and config.json in and out.

Field names and meanings are those of transformers' AlbertConfig so that a `config.json` moves both
ways unchanged. Defaults are albert-base-v2 (transformers defaults to xxlarge, and a config.json that leaves
out a size is read with transformers' default, as transformers reads it). Keys we do not model
(from real hub configs: `architectures`, `down_scale_factor`, `gap_size`, ...) are kept in `extra` and
written back, so loading and saving a hub config loses nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

CONFIG_NAME = "config.json"

# What to do instead of `push_to_hub`, which every class refuses: nothing here uploads.
NO_UPLOAD = (
    "openalbert does not upload models; save_pretrained(dir), then "
    "huggingface_hub.upload_folder(folder_path=dir, repo_id=...)"
)

ACTIVATIONS = (
    "gelu",
    "gelu_new",
    "gelu_fast",
    "gelu_pytorch_tanh",
    "quick_gelu",
    "relu",
    "silu",
    "swish",
    "tanh",
    "sigmoid",
    "mish",
    "linear",
    "gelu_python",
    "gelu_accurate",
    "gelu_python_tanh",
    "gelu_10",
    "relu6",
    "relu2",
    "leaky_relu",
    "laplace",
)  # transformers' ACT2FN but prelu and xielu, which carry weights of their own
# transformers' PretrainedConfig attributes that ALBERT leaves at their defaults: they read as these until
# set (then kept in `extra`, and written to config.json, as transformers writes them).
PRETRAINED_DEFAULTS: dict[str, Any] = {
    "tie_word_embeddings": True,
    "is_encoder_decoder": False,
    "is_decoder": False,
    "add_cross_attention": False,
    "tie_encoder_decoder": False,
    "cross_attention_hidden_size": None,
    "chunk_size_feed_forward": 0,
    "torchscript": False,
    "architectures": None,
    "finetuning_task": None,
    "task_specific_params": None,
    "tokenizer_class": None,
    "prefix": None,
    "sep_token_id": None,
    "decoder_start_token_id": None,
    "dtype": None,
}
# transformers' AlbertConfig defaults where they differ from ours (it defaults to albert-xxlarge's sizes).
TRANSFORMERS_DEFAULTS = {"hidden_size": 4096, "num_attention_heads": 64, "intermediate_size": 16384}
POSITION_EMBEDDING_TYPES = ("absolute", "relative_key", "relative_key_query")
PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")


def refuse_upload(self: Any, *args: Any, **kwargs: Any) -> None:
    """`push_to_hub` of every class here (models, config, tokenizer): NO_UPLOAD says what to do instead."""
    raise NotImplementedError(NO_UPLOAD)


@dataclass
class AlbertConfig:
    """Hyper-parameters of an ALBERT model; defaults build albert-base-v2."""

    vocab_size: int = 30000
    embedding_size: int = 128
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_hidden_groups: int = 1
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    inner_group_num: int = 1
    hidden_act: str = "gelu_new"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    classifier_dropout_prob: float | None = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    position_embedding_type: str = "absolute"
    pad_token_id: int = 0
    bos_token_id: int = 2
    eos_token_id: int = 3
    num_labels: int = 2
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    problem_type: str | None = None
    # What a forward call returns when it does not say (transformers' config attributes of the same names).
    output_hidden_states: bool = False
    output_attentions: bool = False
    return_dict: bool = True
    # {layer: [head, ...]} removed by prune_heads (layers numbered across the shared groups' inner layers).
    pruned_heads: dict[int, list[int]] = field(default_factory=dict)
    # Keys of a config.json that this class does not model, kept verbatim for the round trip.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    model_type: ClassVar[str] = "albert"
    attribute_map: ClassVar[dict[str, str]] = {}  # (transformers' alias table; ALBERT's names are its own)

    def __post_init__(self) -> None:
        self.pruned_heads = {int(k): sorted(int(h) for h in v) for k, v in (self.pruned_heads or {}).items()}
        if self.id2label is not None:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            object.__setattr__(self, "num_labels", len(self.id2label))
        else:
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        if self.label2id is None or len(self.label2id) != len(self.id2label):
            self.label2id = {v: k for k, v in self.id2label.items()}
        else:
            self.label2id = {str(k): int(v) for k, v in self.label2id.items()}
        self.validate()

    def __getattr__(self, name: str) -> Any:
        # Keys this class does not model (`architectures`, `tie_word_embeddings`, a custom one) read as
        # attributes, as transformers' configs keep them.
        extra = self.__dict__.get("extra")
        if extra is not None and not name.startswith("__"):
            if name in extra:
                return extra[name]
            if name == "name_or_path":  # where it was loaded from, as transformers records it
                return extra.get("_name_or_path", "")
            if name == "torch_dtype":  # transformers' older name of dtype
                return extra.get("dtype")
            if name in PRETRAINED_DEFAULTS:
                return copy.deepcopy(PRETRAINED_DEFAULTS[name])
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        # A key this class does not model goes to `extra`, so that config.json keeps it, as transformers'
        # configs keep every attribute set on them. (Fields, properties and private names do not.)
        extra = self.__dict__.get("extra")
        if extra is not None and (name in extra or _unmodelled(type(self), name)):
            extra[name] = value
            return
        # As in transformers, setting num_labels after construction regenerates the label maps, and setting
        # id2label sets num_labels (transformers derives it from id2label).
        if name == "id2label" and isinstance(value, Mapping) and "num_labels" in self.__dict__:
            value = {int(k): str(v) for k, v in value.items()}
            super().__setattr__(name, value)
            super().__setattr__("num_labels", len(value))
            return
        super().__setattr__(name, value)
        if (
            name == "num_labels"
            and getattr(self, "id2label", None) is not None
            and len(self.id2label) != value
        ):
            super().__setattr__("id2label", {i: f"LABEL_{i}" for i in range(value)})
            super().__setattr__("label2id", {f"LABEL_{i}": i for i in range(value)})

    def validate(self) -> None:
        """Raise ValueError naming the offending values if the configuration cannot build a model."""
        positive = (
            "vocab_size",
            "embedding_size",
            "hidden_size",
            "num_hidden_layers",
            "num_hidden_groups",
            "num_attention_heads",
            "intermediate_size",
            "inner_group_num",
            "max_position_embeddings",
            "type_vocab_size",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"AlbertConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.num_hidden_groups > self.num_hidden_layers:
            raise ValueError(
                f"num_hidden_groups ({self.num_hidden_groups}) cannot exceed num_hidden_layers "
                f"({self.num_hidden_layers})"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not supported; choose one of {ACTIVATIONS}")
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"position_embedding_type {self.position_embedding_type!r} is not one of {POSITION_EMBEDDING_TYPES}"
            )
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type {self.problem_type!r} is not one of {PROBLEM_TYPES}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def group_of(self, layer: int) -> int:
        """The shared group whose weights layer application `layer` (0..num_hidden_layers-1) runs: layer *
        num_hidden_groups // num_hidden_layers, computed in floating point as transformers does, so that a
        number of layers that is not a multiple of the groups (18 in 14: layer 9 runs group 6, not 7) reads a
        transformers checkpoint as transformers does. The original's float formula differs on a few more."""
        return int(layer / (self.num_hidden_layers / self.num_hidden_groups))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def use_return_dict(self) -> bool:
        return self.return_dict

    def output_flags(
        self, output_attentions: bool | None, output_hidden_states: bool | None, return_dict: bool | None
    ) -> tuple[bool, bool, bool]:
        """A forward call's output flags, this config's where the call passes None."""
        return (
            self.output_attentions if output_attentions is None else output_attentions,
            self.output_hidden_states if output_hidden_states is None else output_hidden_states,
            self.return_dict if return_dict is None else return_dict,
        )

    def update(self, values: dict[str, Any]) -> None:
        """Set attributes from a dict, as transformers' `PretrainedConfig.update` (unmodelled keys go to
        `extra`), then validate; a ValueError leaves the config as it was."""
        before = {k: copy.copy(v) for k, v in self.__dict__.items()}
        try:
            for key, value in values.items():
                setattr(self, key, value)
            self.validate()
        except (ValueError, TypeError):
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    def update_from_string(self, update: str) -> None:
        """Set existing attributes from "key=value,key=value" (as transformers' `update_from_string`): each
        value is read as the type of the attribute's current value (bool from "true"/"false"/"1"/"0")."""
        values: dict[str, Any] = {}
        for pair in update.split(","):
            key, _, text = pair.partition("=")
            if key not in self.__dataclass_fields__ and key not in self.extra:
                raise ValueError(f"key {key} isn't in the original config dict")
            old = getattr(self, key)
            if isinstance(old, bool):
                if text.lower() not in ("true", "1", "false", "0"):
                    raise ValueError(f"can't derive true or false from {text} (key {key})")
                values[key] = text.lower() in ("true", "1")
            elif isinstance(old, (int, float)):
                values[key] = type(old)(text)
            elif isinstance(old, str):
                values[key] = text
            else:  # None too: its type is unknown
                raise TypeError(
                    f"only int, float, bool or str values can be updated from a string, got {old!r} for key {key}"
                )
        self.update(values)

    # ---- presets -----------------------------------------------------------------------------------

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> AlbertConfig:
        """Build a named preset (`albert-base-v2`, `xxlarge-v1`, ...), with field overrides."""
        key = name.split("/")[-1].removeprefix("albert-")
        if key not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; presets are {sorted('albert-' + k for k in PRESETS)}")
        return cls(**{**PRESETS[key], **overrides})

    # ---- dict / json -------------------------------------------------------------------------------

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], return_unused_kwargs: bool = False, **kwargs: Any
    ) -> AlbertConfig | tuple[AlbertConfig, dict[str, Any]]:
        """Build from a config.json dict; keys this class does not model go to `extra`. As in transformers,
        `kwargs` set the attributes the config has, and the others are unused (returned with the config by
        `return_unused_kwargs=True`)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        # A key the dict leaves out takes transformers' default, so that a minimal config.json builds the model
        # transformers builds from it (where ours differ: albert-base-v2's sizes against its xxlarge ones).
        data = {**TRANSFORMERS_DEFAULTS, **data}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k != "extra"}
        if "id2label" in known and known["id2label"] is not None:
            known.pop("num_labels", None)
        config = cls(**known, extra=extra)
        unused = config._set_known(kwargs)
        return (config, unused) if return_unused_kwargs else config

    def _set_known(self, values: dict[str, Any]) -> dict[str, Any]:
        """Set each of `values` the config has as an attribute (validated after); return the others."""
        unused = {k: v for k, v in values.items() if not hasattr(self, k)}
        for key, value in values.items():
            if key not in unused:
                setattr(self, key, value)
        self.validate()
        return unused

    def to_dict(self) -> dict[str, Any]:
        """The config.json dict, readable by transformers' AlbertConfig."""
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name in ("extra", "num_labels"):
                continue  # num_labels is implied by id2label, as transformers writes it
            value = getattr(self, f.name)
            if f.name in _WRITTEN_WHEN_SET and value == (
                f.default_factory() if f.default is dataclasses.MISSING else f.default
            ):
                continue
            if f.name in ("id2label", "pruned_heads"):  # JSON keys are strings
                value = {str(k): v for k, v in value.items()}
            out[f.name] = value
        out["model_type"] = "albert"
        return out

    def to_diff_dict(self) -> dict[str, Any]:
        """`to_dict` without the task settings left at transformers' defaults (two labels named LABEL_0 and
        LABEL_1, no problem_type): what transformers' `to_diff_dict` gives for an ALBERT config, whose own
        keys it always keeps."""
        out = self.to_dict()
        if self.id2label == {0: "LABEL_0", 1: "LABEL_1"}:
            del out["id2label"], out["label2id"]
        if self.problem_type is None:
            del out["problem_type"]
        return out

    def to_json_string(self, use_diff: bool = True) -> str:
        """The config.json text: `to_diff_dict` (`to_dict` with `use_diff=False`) without `_name_or_path`
        (where the config was loaded from), which transformers leaves out of what it writes too."""
        data = self.to_diff_dict() if use_diff else self.to_dict()
        data.pop("_name_or_path", None)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike, use_diff: bool = True) -> None:
        """Write `to_json_string(use_diff)` to `path`."""
        Path(path).write_text(self.to_json_string(use_diff), encoding="utf-8")

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> AlbertConfig:
        path = Path(path)
        if path.name == CONFIG_NAME and path.parent.is_dir() and not path.exists():
            raise FileNotFoundError(f"{path.parent} holds no {CONFIG_NAME}: it is not a model directory")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
        model_type = data.get("model_type", "albert")
        if model_type != "albert":
            raise ValueError(f"{path} describes a {model_type!r} model, not an ALBERT model")
        return cls.from_dict(data)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        return_unused_kwargs: bool = False,
        **overrides: Any,
    ) -> AlbertConfig | tuple[AlbertConfig, dict[str, Any]]:
        """Read config.json from a directory, a config file or a hub id. Keyword arguments set the config's
        attributes; transformers' hub options (`revision`, `cache_dir`, `subfolder`...:
        `checkpoint.HUB_OPTIONS`) are read as such, and any other keyword is unused, as in transformers
        (returned with the config by `return_unused_kwargs=True`)."""
        from openalbert.checkpoint import hub_options, resolve_path

        hub = hub_options(overrides)
        path = Path(pretrained_model_name_or_path)
        if path.is_file():
            config = cls.from_json_file(path)
        else:
            config = cls.from_json_file(
                resolve_path(pretrained_model_name_or_path, [CONFIG_NAME], **hub) / CONFIG_NAME
            )
        unused = config._set_known(overrides)
        return (config, unused) if return_unused_kwargs else config

    push_to_hub = refuse_upload

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False) -> Path:
        """Write config.json into `save_directory` (created if needed) and return its path."""
        if push_to_hub:
            self.push_to_hub()
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        target = save_directory / CONFIG_NAME
        target.write_text(self.to_json_string(), encoding="utf-8")
        return target


def as_albert_config(config: Any) -> AlbertConfig:
    """`config` as an AlbertConfig: itself, a config.json file or a directory holding one, or a config of
    another library whose model_type is "albert" (transformers' AlbertConfig, as its users pass it)."""
    if isinstance(config, AlbertConfig):
        return config
    if isinstance(config, (str, os.PathLike)):
        return AlbertConfig.from_pretrained(config)
    if getattr(config, "model_type", None) == "albert" and hasattr(config, "to_dict"):
        return AlbertConfig.from_dict(config.to_dict())
    raise TypeError(
        f"config must be an AlbertConfig, a config.json path or transformers' AlbertConfig, got {config!r}"
    )


def converts_foreign_configs(init: Any) -> Any:
    """Wrap a model class's constructor so that its `config` may also be transformers' AlbertConfig (as its
    users write `AlbertForMaskedLM(config)`), converted to an AlbertConfig before the constructor reads it."""
    if getattr(init, "_converts_configs", False):
        return init

    @functools.wraps(init)
    def __init__(self: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(config, AlbertConfig) and getattr(config, "model_type", None) == "albert":
            config = as_albert_config(config)
        init(self, config, *args, **kwargs)

    __init__._converts_configs = True  # type: ignore[attr-defined]
    __init__.__signature__ = inspect.signature(init)  # type: ignore[attr-defined]  # (Keras 3 reads it)
    return __init__


def check_albert_config(config: Any) -> None:
    """A model constructor's check: TypeError, saying how to convert it, for any other config."""
    if not isinstance(config, AlbertConfig):
        kind = f"{type(config).__module__}.{type(config).__qualname__}"
        raise TypeError(
            f"config must be an openalbert.AlbertConfig, got {kind}; a transformers AlbertConfig converts with "
            "openalbert.AlbertConfig.from_dict(config.to_dict()) (from_pretrained(config=...) converts it)"
        )


def _unmodelled(cls: type, name: str) -> bool:
    """Whether `name` is a key that `cls` does not model: no field, property or method, not private."""
    return name not in cls.__dataclass_fields__ and not hasattr(cls, name) and not name.startswith("_")


def _unknown_keywords_to_extra(init: Any) -> Any:
    """The dataclass constructor, taking keywords it does not know into `extra` (transformers' configs take
    any keyword as an attribute: `AlbertConfig(architectures=[...], tie_word_embeddings=True)`)."""

    @functools.wraps(init)
    def __init__(self: AlbertConfig, *args: Any, **kwargs: Any) -> None:
        fields = type(self).__dataclass_fields__
        unknown = {name: value for name, value in kwargs.items() if name not in fields}
        known = {name: value for name, value in kwargs.items() if name in fields}
        known["extra"] = dict(known.get("extra") or {})  # the caller's dict (or a copy's) stays its own
        init(self, *args, **known)
        self.extra.update(unknown)

    return __init__


AlbertConfig.__init__ = _unknown_keywords_to_extra(AlbertConfig.__init__)

# Written to config.json only when they differ from the default, as transformers writes them.
_WRITTEN_WHEN_SET = ("output_hidden_states", "output_attentions", "return_dict", "pruned_heads")


def _preset(hidden: int, layers: int, heads: int, v1: bool) -> dict[str, Any]:
    # v1 checkpoints used exact GELU and dropout 0.1 (xxlarge none); v2 switched to gelu_new, no dropout.
    dropout = 0.1 if v1 and hidden < 4096 else 0.0
    return {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": 4 * hidden,
        "hidden_act": "gelu" if v1 else "gelu_new",
        "hidden_dropout_prob": dropout,
        "attention_probs_dropout_prob": dropout,
    }


# The released sizes (paper table 1); all share E=128, vocab 30000, one shared layer group.
PRESETS: dict[str, dict[str, Any]] = {
    f"{size}-{version}": _preset(hidden, layers, heads, version == "v1")
    for size, (hidden, layers, heads) in {
        "base": (768, 12, 12),
        "large": (1024, 24, 16),
        "xlarge": (2048, 24, 16),
        "xxlarge": (4096, 12, 64),
    }.items()
    for version in ("v1", "v2")
}
