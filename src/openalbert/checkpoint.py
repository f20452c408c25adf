"""Find, read and write checkpoints in transformers' directory layout.

A model is named by a local directory, by the embedded default model, or by a hub id
(`albert/albert-base-v2`, legacy `albert-base-v2`). Hub ids go through huggingface_hub into the
standard HF cache; with HF_HUB_OFFLINE=1 only that cache is read and the network is never touched.
Weights come from `model.safetensors`, sharded safetensors with an index, or `pytorch_model.bin`
(read with `weights_only=True`). Saving writes `config.json` + `model.safetensors` with tied
weights stored once, which transformers 4.x and 5.x load.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import json
import logging
import math
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from openalbert import cpu_kernels
from openalbert.config import CONFIG_NAME, AlbertConfig, as_albert_config
from openalbert.tokenizer import TOKENIZER_FILES

if TYPE_CHECKING:
    from openalbert.modeling import AlbertPreTrainedModel

logger = logging.getLogger("openalbert")

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PT_WEIGHTS_NAME = "pytorch_model.bin"
PT_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"  # torch.save shards, as transformers writes them
TF2_WEIGHTS_NAME = "tf_model.h5"  # what transformers' TF classes save
TF2_WEIGHTS_INDEX_NAME = "tf_model.h5.index.json"  # and their shards' index
FLAX_WEIGHTS_NAME = "flax_model.msgpack"  # what transformers' Flax classes save
FLAX_WEIGHTS_INDEX_NAME = "flax_model.msgpack.index.json"


def variant_name(name: str, variant: str | None) -> str:
    """transformers' name of a weights file of a `variant` ("fp16"): model.fp16.safetensors,
    model.safetensors.index.fp16.json, pytorch_model.fp16.bin; the name itself without one."""
    if variant is None:
        return name
    if not variant or "/" in variant or variant.startswith("."):
        raise ValueError(
            f"variant {variant!r} cannot name a weights file (as in model.<variant>.safetensors)"
        )
    stem, ext = name.rsplit(".", 1)
    return f"{stem}.{variant}.{ext}"


def _shard_glob(single: str) -> str:
    """The pattern of a weights file's shards: model.fp16.safetensors -> model.fp16-*-of-*.safetensors."""
    stem, ext = single.rsplit(".", 1)
    return f"{stem}-*-of-*.{ext}"


# The small English model that ships inside the package (see default_model/README.md).
DEFAULT_MODEL = "openalbert/albert-small-en"
DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"

# The weight formats, in the order a directory's are read by default: name -> (file, index of shards, the shards'
# pattern). A variant ("fp16") names safetensors and .bin files only, as in transformers.
WEIGHT_FORMATS: dict[str, tuple[str, str, str]] = {
    "safetensors": (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, "model-*.safetensors"),
    "pt": (PT_WEIGHTS_NAME, PT_WEIGHTS_INDEX_NAME, "pytorch_model-*.bin"),
    "tf": (TF2_WEIGHTS_NAME, TF2_WEIGHTS_INDEX_NAME, "tf_model-*.h5"),
    "flax": (FLAX_WEIGHTS_NAME, FLAX_WEIGHTS_INDEX_NAME, "flax_model-*.msgpack"),
}
_VARIANT_FORMATS = ("safetensors", "pt")

# What a model directory may hold; the only files fetched from the hub. The weights in other formats are
# fetched only for a repo without safetensors (`resolve_weights`), as transformers does: most repos hold the
# same weights two to four times.
MODEL_FILES = [CONFIG_NAME, *WEIGHT_FORMATS["safetensors"], *TOKENIZER_FILES]

# Hub names of the original releases before the hub moved them under the `albert/` organisation.
LEGACY_HUB_IDS = {
    f"albert-{size}-{v}": f"albert/albert-{size}-{v}"
    for size in ("base", "large", "xlarge", "xxlarge")
    for v in ("v1", "v2")
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# Buffers that some older checkpoints stored; they are rebuilt by the model, never loaded.
_OTHER_HEADS = ("albert.pooler.", "pooler.", "predictions.", "sop_classifier.", "classifier.", "qa_outputs.")
_IGNORED_KEYS = re.compile(r"(^|\.)(position_ids|token_type_ids)$")

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "float64": torch.float64,
    "double": torch.float64,
}


# ---- finding a model directory -----------------------------------------------------------------------------


# transformers' from_pretrained arguments for the download from the hub (`use_auth_token` is token's old name).
HUB_OPTIONS = frozenset(
    {
        "cache_dir",
        "revision",
        "local_files_only",
        "token",
        "use_auth_token",
        "force_download",
        "subfolder",
        "proxies",
    }
)


def hub_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take transformers' hub arguments (HUB_OPTIONS) out of a from_pretrained's keyword arguments."""
    return {key: kwargs.pop(key) for key in list(kwargs) if key in HUB_OPTIONS}


def resolve_path(name_or_path: str | os.PathLike, filenames: Iterable[str] = MODEL_FILES, **hub: Any) -> Path:
    """Return a local directory holding the model named by `name_or_path`.

    A local directory is returned as is; DEFAULT_MODEL maps to the embedded model; anything else that
    looks like a hub id is fetched into (or, offline, read from) the HF cache. `hub` takes transformers'
    HUB_OPTIONS: `subfolder` is a folder inside the directory or repo, the others go to huggingface_hub.
    """
    unknown = sorted(set(hub) - HUB_OPTIONS)
    if unknown:
        raise TypeError(f"unknown hub options {unknown}; they are {sorted(HUB_OPTIONS)}")
    subfolder = hub.pop("subfolder", None) or ""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if subfolder and not (path / subfolder).is_dir():
            raise FileNotFoundError(f"{path} has no subfolder {subfolder!r}")
        return path / subfolder
    name = str(name_or_path)
    if name == DEFAULT_MODEL:
        if not (DEFAULT_MODEL_DIR / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"the embedded default model is missing from {DEFAULT_MODEL_DIR}")
        return DEFAULT_MODEL_DIR
    if path.exists():
        raise NotADirectoryError(
            f"{name} is a file; pass the directory that holds config.json and the weights"
        )
    if not _HUB_ID.match(name) or name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model directory {name} does not exist")
    patterns = [f"{subfolder}/{f}" if subfolder else f for f in filenames]
    return _from_hub(name, patterns, **hub) / subfolder


def weight_formats(options: dict[str, Any]) -> tuple[str, ...]:
    """The formats to read, in order, by transformers' from_pretrained flags (taken out of `options`): every
    class reads every format, safetensors first; `from_tf`/`from_flax` put that format first,
    `use_safetensors=False` skips safetensors and `use_safetensors=True` reads nothing else."""
    use_safetensors = options.pop("use_safetensors", None)
    first = [name for name in ("tf", "flax") if options.pop(f"from_{name}", False)]
    options.pop("from_pt", None)
    if use_safetensors:
        rest = ["safetensors"]
    else:
        rest = [name for name in WEIGHT_FORMATS if name != "safetensors" or use_safetensors is None]
    return tuple(dict.fromkeys(first + rest))


def _format_files(name: str, variant: str | None) -> tuple[str, str, str]:
    """A format's file, index and shard pattern, of `variant` where one is given."""
    single, index, shards = WEIGHT_FORMATS[name]
    if variant is None:
        return single, index, shards
    single = variant_name(single, variant)
    return single, variant_name(index, variant), _shard_glob(single)


def resolve_weights(
    name_or_path: str | os.PathLike,
    variant: str | None = None,
    formats: tuple[str, ...] = tuple(WEIGHT_FORMATS),
    **hub: Any,
) -> Path:
    """`resolve_path` for the config, the tokenizer files and the weights of the first of `formats` (see
    `weight_formats`) a hub repo has, asked for in that order: every class reads all of them
    (`load_state_dict`). With a `variant`, the safetensors or else `.bin` weights of that name
    (`variant_name`), as transformers fetches them."""
    if variant is not None:
        formats = tuple(f for f in formats if f in _VARIANT_FORMATS)
    groups = [list(_format_files(f, variant)) for f in formats]
    directory = resolve_path(name_or_path, [CONFIG_NAME, *groups[0], *TOKENIZER_FILES], **hub)
    for k in range(1, len(groups)):
        if any((directory / name).is_file() for group in groups[:k] for name in group[:2]):
            break
        directory = resolve_path(name_or_path, [CONFIG_NAME, *groups[k]], **hub)
    return directory


# Where transformers 4.x looks for the cache, first set first: its own (deprecated) variables, then the hub's.
_CACHE_VARIABLES = (
    "TRANSFORMERS_CACHE",
    "PYTORCH_TRANSFORMERS_CACHE",
    "PYTORCH_PRETRAINED_BERT_CACHE",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
)


def _hub_cache_dir() -> Path:
    """The HF cache as transformers finds it (read at call time: huggingface_hub reads it once at import):
    _CACHE_VARIABLES, else HF_HOME/hub, else XDG_CACHE_HOME (~/.cache)/huggingface/hub; ~ and $VARS expanded."""
    env = os.environ
    path = next((env[name] for name in _CACHE_VARIABLES if env.get(name)), None)
    if path is None:
        home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
        path = os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(path)))


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "0"
    return value.upper() in ("1", "ON", "YES", "TRUE")


def _from_hub(
    repo_id: str,
    filenames: list[str],
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    use_auth_token: str | bool | None = None,
    force_download: bool = False,
    proxies: dict[str, str] | None = None,
) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    candidates = [repo_id] + ([LEGACY_HUB_IDS[repo_id]] if repo_id in LEGACY_HUB_IDS else [])
    offline = _offline() or local_files_only
    if offline and force_download:
        raise ValueError(
            "force_download=True needs the hub, and HF_HUB_OFFLINE or local_files_only says not to use it"
        )
    cache = Path(cache_dir).expanduser() if cache_dir is not None else _hub_cache_dir()
    errors = []
    for rid in candidates:
        try:
            return Path(
                snapshot_download(
                    rid,
                    allow_patterns=filenames,
                    cache_dir=cache,
                    local_files_only=offline,
                    revision=revision,
                    token=token if token is not None else use_auth_token,
                    force_download=force_download,
                    proxies=proxies,
                )
            )
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as e:
            errors.append(f"{rid}: {type(e).__name__}")
    where = (
        "in the local HF cache (HF_HUB_OFFLINE or local_files_only is set)"
        if offline
        else "locally or on the hub"
    )
    at = f" at revision {revision!r}" if revision else ""
    raise FileNotFoundError(
        f"model {repo_id!r}{at} was not found {where}: no such directory, and the hub lookup failed "
        f"({'; '.join(errors)}). Cache dir: {cache}"
    )


# ---- reading weights --------------------------------------------------------------------------------------------


def load_state_dict(
    directory: str | os.PathLike, variant: str | None = None, formats: tuple[str, ...] = tuple(WEIGHT_FORMATS)
) -> dict[str, torch.Tensor]:
    """Read all weights of a model directory onto the CPU, from the first of `formats` it holds (every
    format by default, safetensors first; see `weight_formats`); with a `variant`, the safetensors or `.bin`
    weights of that name (model.<variant>.safetensors...), as transformers reads them."""
    directory = Path(directory)
    if variant is not None:
        formats = tuple(f for f in formats if f in _VARIANT_FORMATS)
    for name in formats:
        single, index, _ = _format_files(name, variant)
        files = _weight_files(directory, single, index)
        if files:
            return _READERS[name](files)
    expected = ", ".join(name for f in formats for name in _format_files(f, variant)[:2])
    if variant is not None:
        held = sorted(
            p.name
            for pattern in ("model*.safetensors*", "pytorch_model*.bin*", *WEIGHT_FILES[4:])
            for p in directory.glob(pattern)
            if not re.search(r"-\d{5}-of-\d{5}\.", p.name)  # shards: their index is named
        )
        raise FileNotFoundError(
            f"no weights of variant {variant!r} in {directory}: expected one of {expected}"
            + (f"; it holds {', '.join(held)}" if held else "")
        )
    others = [name for name in WEIGHT_FILES if (directory / name).is_file()]
    if not others and (directory / "model.onnx").is_file():
        raise FileNotFoundError(
            f"no weights in {directory}: it holds an ONNX export (model.onnx), which ONNX Runtime runs; load "
            "the model it was exported from"
        )
    raise FileNotFoundError(
        f"no weights in {directory}: expected one of {expected}"
        + (
            f" (it holds {', '.join(others)}, which use_safetensors/from_tf/from_flax leave out)"
            if others
            else ""
        )
    )


def _read_tf(files: list[Path]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in read_tf_h5(*files).items()}


def _read_flax(files: list[Path]) -> dict[str, torch.Tensor]:
    from openalbert.modeling_flax import read_flax_msgpack  # needs JAX and Flax: the flax extra

    return {k: torch.from_numpy(v) for path in files for k, v in read_flax_msgpack(path).items()}


def _read_each(read: Any) -> Any:
    """A reader of one file made a reader of a file's shards (or the one file), merged."""
    return lambda files: {k: v for path in files for k, v in read(path).items()}


def _weight_files(directory: Path, single: str, index: str) -> list[Path]:
    """The one weights file `single`, or else the shards `index` lists; none where neither is there."""
    if (directory / single).is_file():
        return [directory / single]
    return shard_files(directory / index) if (directory / index).is_file() else []


def shard_files(index: Path) -> list[Path]:
    """The shard files an index (`{"weight_map": {name: shard file}}`) lists, each once, all present."""
    try:
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{index} is not a valid weights index ({e})") from None
    shards = [index.parent / shard for shard in sorted(set(weight_map.values()))]
    for shard in shards:
        if not shard.is_file():
            raise FileNotFoundError(f"{index} lists shard {shard.name}, which is missing from {index.parent}")
    return shards


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"{path} is corrupt, truncated or not a weights file ({type(e).__name__}: {e})"
        ) from None


# The weight files a directory may hold, in the order they are read.
WEIGHT_FILES = tuple(name for single, index, _ in WEIGHT_FORMATS.values() for name in (single, index))

# transformers' TF weight names -> PyTorch's: the last part by what it is (whether the array is transposed),
# list items "albert_layers_._0" as "albert_layers.0".
_TF_LEAVES = {
    "kernel": ("weight", True),
    "bias": ("bias", False),
    "gamma": ("weight", False),
    "beta": ("bias", False),
    "embeddings": ("weight", False),
    "weight": ("weight", False),
}
# transformers' TF MLM head adds `predictions/decoder/bias`, not `predictions/bias` (which it keeps but never
# reads); PyTorch's one bias is the former, as trained.
_TF_ALIASES = {"predictions/decoder/bias": "predictions/bias"}


def read_tf_h5(*paths: Path) -> dict[str, np.ndarray]:
    """The tf_model.h5 that transformers' TF classes save, or its shards (tf_model-*.h5), as a PyTorch state
    dict of fp32 numpy arrays (h5py only: TensorFlow is not needed to read it)."""
    try:
        import h5py
    except ImportError:
        raise ImportError(f"reading {paths[0]} needs h5py: pip install h5py (or 'openalbert[tf]')") from None

    arrays: dict[str, np.ndarray] = {}
    for path in paths:
        arrays |= _tf_arrays(h5py, path)
    # The aliases and names only once every shard is in: an alias and its source may be in different ones.
    arrays |= {target: arrays[source] for source, target in _TF_ALIASES.items() if source in arrays}
    state = {}
    for name, array in arrays.items():
        *path_parts, leaf = name.split("/")
        if leaf not in _TF_LEAVES or name in _TF_ALIASES:
            continue
        torch_leaf, transposed = _TF_LEAVES[leaf]
        array = np.asarray(array, np.float32)
        key = ".".join([part.replace("_._", ".") for part in path_parts] + [torch_leaf])
        state[key] = np.ascontiguousarray(array.T if transposed else array)
    return state


def _tf_arrays(h5py: Any, path: Path) -> dict[str, np.ndarray]:
    """One TF weights file's arrays by their weight names, the model's name left out ("albert/...")."""
    arrays: dict[str, np.ndarray] = {}
    borrowed: dict[str, np.ndarray] = {}  # another layer's weight, stored again under a layer that uses it

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            # "<layer>/<model's name>/<layer>/.../<weight>:0", whichever head (and model name) saved it; a
            # shard holds "<layer>/.../<weight>:0", which is kept whole below
            parts = name.removesuffix(":0").split("/")
            if len(parts) > 2 and parts[2] == parts[0]:
                arrays["/".join(parts[2:])] = item[()]
            else:
                borrowed["/".join(parts)] = item[()]

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError as e:
        raise ValueError(f"{path} is corrupt or truncated ({e}); re-download or re-save it") from None
    # The masked-LM head stores the word embedding it decodes with again (predictions/<model>/albert/...);
    # an older layout has no model name level, and its paths are kept whole.
    for name, array in borrowed.items():
        parts = name.split("/")
        if "/".join(parts[2:]) not in arrays:
            arrays[name] = array
    return arrays


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except Exception as e:
        raise ValueError(
            f"{path} is corrupt or truncated ({type(e).__name__}: {e}); re-download or re-save it"
        ) from None


_READERS = {
    "safetensors": _read_each(_read_safetensors),
    "pt": _read_each(_read_torch),
    "tf": _read_tf,
    "flax": _read_flax,
}


def as_dtype(dtype: torch.dtype | str | None, config: AlbertConfig | None = None) -> torch.dtype | None:
    """Accept torch dtypes and their names; 'auto' means the dtype recorded in config.json."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        recorded = config.extra.get("dtype") or config.extra.get("torch_dtype") if config else None
        return DTYPES.get(recorded, torch.float32) if recorded else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)} or 'auto'")
    return DTYPES[dtype]


def as_device(device: torch.device | str | int | None) -> torch.device | None:
    """Accept 'cpu', 'cuda', 'cuda:1', an index (-1 = CPU, as in transformers' pipelines) or a torch.device;
    a CUDA device this torch cannot reach is a ValueError that says so."""
    if device is None:
        return None
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, int) or (isinstance(device, str) and device.lstrip("-").isdigit()):
        index = int(device)
        dev = torch.device("cpu") if index < 0 else torch.device("cuda", index)
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as e:
            raise ValueError(f"unknown device {device!r}: use cpu, cuda, cuda:N or an index") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "built with CUDA but sees no GPU"
            raise ValueError(f"device {str(dev)!r} was requested, but torch {torch.__version__} is {build}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(dev)!r} was requested, but only {torch.cuda.device_count()} GPU(s) are visible"
            )
    elif dev.type != "cpu":  # mps, xpu...: where this torch has the backend and sees the device; not meta
        backend = getattr(torch, dev.type, None)
        if not getattr(backend, "is_available", lambda: False)():
            raise ValueError(
                f"device {str(dev)!r} is not available to this torch: use cpu, cuda, cuda:N or an index"
            )
    return dev


def placement(
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | int | None = None,
    *,
    torch_dtype: torch.dtype | str | None = None,
    device_map: Any = None,
) -> tuple[torch.dtype | str | None, torch.device | str | int | None]:
    """(dtype, device) from transformers' names for them as well: `torch_dtype` is dtype's v4 name, and
    `device_map` a device ("cpu", "cuda:1", 1), {"": device}, or "auto" / "balanced" / "sequential" (the
    first GPU if there is one, else the CPU). A map that splits the model between devices is refused: ALBERT
    runs its one shared layer in every layer, so there is nothing to split but the embeddings."""
    if torch_dtype is not None:
        named = "auto" not in (dtype, torch_dtype)
        if (
            dtype is not None
            and dtype != torch_dtype
            and not (named and as_dtype(dtype) == as_dtype(torch_dtype))
        ):
            raise ValueError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; pass one (dtype)")
        dtype = torch_dtype
    if device_map is None:
        return dtype, device
    if isinstance(device_map, dict):
        targets = set(device_map.values())
        if len(targets) != 1:
            raise ValueError(
                f"device_map {device_map} splits the model between devices; ALBERT runs on one: pass a device"
            )
        (device_map,) = targets
    if device_map in ("auto", "balanced", "balanced_low_0", "sequential"):
        device_map = "cuda:0" if torch.cuda.is_available() else "cpu"
    mapped = as_device(device_map)
    if device is not None and as_device(device) != mapped:
        raise ValueError(f"device={device!r} and device_map={device_map!r} disagree; pass one")
    return dtype, mapped


# ---- loading into a model ---------------------------------------------------------------------------------------


def load_pretrained(
    cls: type[AlbertPreTrainedModel],
    name_or_path: str | os.PathLike | None,
    *,
    config: AlbertConfig | None = None,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | int | None = None,
    strict: bool = False,
    ignore_mismatched_sizes: bool = False,
    output_loading_info: bool = False,
    **config_overrides: Any,
) -> Any:
    """Build `cls` from a checkpoint; weights the checkpoint lacks are initialised and reported. Keyword
    arguments that name a config field override it; HUB_OPTIONS go to the download."""
    variant, formats = config_overrides.pop("variant", None), weight_formats(config_overrides)
    # transformers' state_dict=: these weights instead of the directory's (whose config is still read), or
    # with name_or_path None, these weights and config= alone.
    given = config_overrides.pop("state_dict", None)
    hub = hub_options(config_overrides)
    if name_or_path is None:
        if given is None or config is None:
            raise ValueError(
                f"{cls.__name__}.from_pretrained(None) needs the weights as state_dict= and config="
            )
        directory = None
    else:
        directory = resolve_weights(name_or_path, variant, formats, **hub)
    # The class's own constructor arguments (AlbertModel's add_pooling_layer) go to it, as in transformers.
    arguments = set(inspect.signature(cls.__init__).parameters) - {"self", "config"}
    init = {k: config_overrides.pop(k) for k in list(config_overrides) if k in arguments}
    config = load_config(directory, config, config_overrides, cls.__name__)
    if name_or_path is not None:
        config.extra["_name_or_path"] = str(name_or_path)  # as transformers records it (model.name_or_path)
    if given is not None:
        # copied, as transformers copies them into the model: the caller's dict stays its own
        state = {k: v.detach().to("cpu", copy=True) for k, v in given.items()}
    else:
        state = load_state_dict(directory, variant, formats)
    where = directory if given is None else "the state_dict given"  # (for the messages below)

    with torch.device("meta"), _no_init():
        # shapes only: no memory, no random numbers for weights the checkpoint replaces
        model = cls(config, **init)
    expected = model.state_dict()
    state = _match_prefix(state, expected, model.base_model_prefix)
    tied = aliases(model)

    mismatched = [
        (k, tuple(v.shape), tuple(expected[k].shape))
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if mismatched and not ignore_mismatched_sizes:
        listed = ", ".join(f"{k} {got} vs {want}" for k, got, want in mismatched)
        raise ValueError(
            f"weights in {where} have other shapes than the model expects (checkpoint vs model): {listed}. "
            "A different num_labels or vocab_size? Pass ignore_mismatched_sizes=True to re-initialise them"
        )
    for k, _, _ in mismatched:
        del state[k]
    unexpected = sorted(k for k in state if k not in expected and not _IGNORED_KEYS.search(k))
    # A weight of the wrong shape is initialised afresh but, as in transformers, listed as mismatched only.
    resized = [k for k, _, _ in mismatched]
    missing = sorted(k for k in expected if k not in state and k not in tied and k not in resized)
    if strict and (missing or unexpected):
        raise ValueError(
            f"checkpoint {where} does not match {cls.__name__}: missing {missing}, unexpected {unexpected}"
        )
    _initialise(model, missing + resized)
    model.load_state_dict(
        {k: v.contiguous() for k, v in state.items() if k in expected}, strict=False, assign=True
    )
    model.tie_weights()
    unset = [k for k, t in model.state_dict().items() if t.is_meta]  # neither loaded nor initialised
    if unset:
        raise RuntimeError(f"{cls.__name__}: weights left unset: {unset}")
    # As in transformers, a tied name is missing with the weight it names (predictions.decoder.bias).
    missing = sorted(missing + [k for k, source in tied.items() if source in missing])
    report_missing(cls.__name__, where, missing + resized)
    if unexpected:
        # Another ALBERT head's weights (a pretraining checkpoint read as a masked LM) are expected to go
        # unused; anything else is worth a warning.
        known = all(k.startswith(_OTHER_HEADS) for k in unexpected)
        logger.log(
            logging.INFO if known else logging.WARNING,
            "Some weights of the checkpoint at %s were not used by %s: %s",
            where,
            cls.__name__,
            unexpected,
        )

    if dtype == "auto" and not (config.extra.get("dtype") or config.extra.get("torch_dtype")):
        # (config.json records no dtype: the weights' own, as transformers reads "auto")
        dtype = next((t.dtype for t in state.values() if t.is_floating_point()), torch.float32)
    model.to(device=as_device(device), dtype=as_dtype(dtype, config) or torch.float32)
    if model.dtype == torch.bfloat16 and not cpu_kernels.linear_available():  # it serves bf16 inference
        cpu_kernels.warn_if_emulated_bf16(model.device, "bf16 weights")
    model.eval()
    if output_loading_info:
        return model, {
            "missing_keys": missing,
            "unexpected_keys": unexpected,
            "mismatched_keys": [k for k, _, _ in mismatched],
            "error_msgs": [],  # (transformers' key; a tensor that cannot load raises here instead)
        }
    return model


# What module constructors and _init_weights call to fill weights.
_INIT_FUNCTIONS = ("normal_", "uniform_", "kaiming_uniform_", "xavier_uniform_", "trunc_normal_", "zeros_",
                   "ones_", "constant_")  # fmt: skip


class _InitState(threading.local):
    depth = 0  # > 0 in a thread that is building a model on the meta device


_INIT_LOCK = threading.Lock()
_INIT_STATE = _InitState()
_init_users = 0  # threads inside _no_init: torch.nn.init holds the wrappers while there are any
_init_saved: dict[str, Callable[..., torch.Tensor]] = {}  # torch.nn.init's own functions meanwhile


def _skippable(function: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    @functools.wraps(function)
    def fill(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return tensor if _INIT_STATE.depth else function(tensor, *args, **kwargs)

    return fill


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    """torch.nn.init's filling functions leave their tensor as it is in this thread, while a model is
    built on the meta device: there they would fill nothing, and the first would import torch._dynamo
    (2.6 s of a CLI call). A model built in another thread meanwhile is initialised as usual."""
    global _init_users
    with _INIT_LOCK:
        if _init_users == 0:
            for name in _INIT_FUNCTIONS:
                _init_saved[name] = getattr(torch.nn.init, name)
                setattr(torch.nn.init, name, _skippable(_init_saved[name]))
        _init_users += 1
    _INIT_STATE.depth += 1
    try:
        yield
    finally:
        _INIT_STATE.depth -= 1
        with _INIT_LOCK:
            _init_users -= 1
            if _init_users == 0:
                for name, function in _init_saved.items():
                    setattr(torch.nn.init, name, function)


def _initialise(model: AlbertPreTrainedModel, missing: list[str]) -> None:
    """Give the modules that own `missing` weights real memory and the model's initialisation; the rest of
    the meta-built model is assigned the checkpoint's tensors afterwards."""
    owners = {name.rpartition(".")[0] for name in missing}
    for name in sorted(owners):
        module = model.get_submodule(name)
        module.to_empty(device="cpu", recurse=False)
        model._init_weights(module)


# transformers' from_pretrained arguments that change nothing here: no remote code, no offloading (the model
# is read as the first forward pass touches it), the download resumes by itself.
NO_EFFECT = frozenset(
    {"trust_remote_code", "resume_download", "_fast_init", "offload_folder", "offload_state_dict"}
)


def load_config(
    directory: Path | None, config: AlbertConfig | None, overrides: dict[str, Any], caller: str
) -> AlbertConfig:
    """The model's configuration: `config`, or the directory's config.json, with `overrides` (keyword
    arguments of `caller`'s from_pretrained) set and the whole validated."""
    # (a config given is copied, as transformers copies it: the model's own, which the caller's overrides,
    # resizing or pruning then leave alone, and which two models loaded with it do not share)
    if config is None:
        config = AlbertConfig.from_json_file(directory / CONFIG_NAME)
    elif isinstance(config, AlbertConfig):
        config = copy.deepcopy(config)
    else:
        config = as_albert_config(config)  # made anew from the other object
    for key, value in overrides.items():
        if key in NO_EFFECT:
            continue
        if not hasattr(config, key):
            raise TypeError(f"{caller}.from_pretrained got an unknown argument {key!r}")
        setattr(config, key, value)
    config.validate()
    return config


def refuse_pruned(config: AlbertConfig, caller: str) -> None:
    """The Flax and TF classes build every head, as transformers' do: a pruned checkpoint is named as such."""
    if config.pruned_heads:
        raise ValueError(
            f"{caller} cannot load a model with pruned attention heads (config.pruned_heads = "
            f"{config.pruned_heads}); the PyTorch classes can"
        )


def report_missing(caller: str, directory: Path | str, missing: list[str]) -> None:
    """Warn that the weights `missing` from the checkpoint were initialised (a head not yet trained)."""
    if missing:
        logger.warning(
            "Some weights of %s were not in the checkpoint at %s and are newly initialised: %s. "
            "Train this model on a down-stream task before using it for predictions.",
            caller,
            directory,
            missing,
        )


# The MLM decoder is the word embedding and predictions.bias: PyTorch checkpoints may hold a copy of both.
TIED_DECODER = ("predictions.decoder.weight", "predictions.decoder.bias")


def untied_decoder_refused(config: AlbertConfig, framework: str) -> None:
    """The TensorFlow and Flax masked-LM heads decode with the word embedding; a checkpoint with a decoder
    weight of its own (tie_word_embeddings false) would be read wrongly, so it is refused."""
    if not config.extra.get("tie_word_embeddings", True):
        raise ValueError(
            f"the {framework} masked-LM heads decode with the word embeddings, but this config has "
            "tie_word_embeddings=false (a decoder weight of its own); load it with the PyTorch classes"
        )


def aliases(model: torch.nn.Module) -> dict[str, str]:
    """The names under which the model holds a parameter it holds under an earlier name too, each with that
    name: the MLM decoder's weight (unless tie_word_embeddings is false) and bias. A checkpoint stores each
    such tensor once."""
    first: dict[int, str] = {}
    tied = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            tied[name] = first[id(p)]
        else:
            first[id(p)] = name
    return tied


def merge_checkpoint(
    caller: str,
    directory: Path,
    state: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    prefix: str,
    ignore_mismatched_sizes: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """`expected` (a fresh model's state dict, numpy arrays) with the checkpoint's `state` laid over it, as
    the Flax and TF classes load: a bare checkpoint serves a head and the reverse, other shapes are an error
    (or, with `ignore_mismatched_sizes`, keep their fresh values), another head's weights are logged and
    weights the checkpoint lacks are reported as newly initialised. Returns the merged state and the loading
    info (`missing_keys`, `unexpected_keys`, `mismatched_keys`) as PyTorch's."""
    state = _match_prefix(state, expected, prefix)
    loaded = {k: v for k, v in state.items() if k in expected}
    mismatched = [k for k, v in loaded.items() if v.shape != expected[k].shape]
    if mismatched and not ignore_mismatched_sizes:
        shapes = ", ".join(f"{k} {loaded[k].shape} vs {expected[k].shape}" for k in mismatched)
        raise ValueError(
            f"weights in {directory} have other shapes than the model expects: {shapes}. A different num_labels "
            "or vocab_size? Pass ignore_mismatched_sizes=True to re-initialise them"
        )
    loaded = {k: v for k, v in loaded.items() if k not in mismatched}  # their fresh values stay
    state = {k: v for k, v in state.items() if k not in mismatched}
    unexpected = sorted(
        k for k in state if k not in expected and k not in TIED_DECODER and not _IGNORED_KEYS.search(k)
    )
    if unexpected:  # another head's weights, as when a pretraining checkpoint is read as a masked LM
        logger.info(
            "Some weights of the checkpoint at %s were not used by %s: %s", directory, caller, unexpected
        )
    missing = sorted(set(expected) - set(loaded) - set(mismatched))
    report_missing(caller, directory, missing + mismatched)
    info = {"missing_keys": missing, "unexpected_keys": unexpected, "mismatched_keys": mismatched}
    return expected | loaded, info


def _match_prefix(
    state: dict[str, torch.Tensor], expected: dict[str, Any], prefix: str
) -> dict[str, torch.Tensor]:
    """Move between a bare-model checkpoint (`embeddings.*`) and a head checkpoint (`albert.embeddings.*`)."""
    has_prefix = any(k.startswith(prefix + ".") for k in state)
    wants_prefix = any(k.startswith(prefix + ".") for k in expected)
    if has_prefix and not wants_prefix:
        # The head's own weights stay, to be reported unused (as transformers reports them).
        return {k.removeprefix(prefix + "."): v for k, v in state.items() if k.startswith(prefix + ".")} | {
            k: v for k, v in state.items() if not k.startswith(prefix + ".")
        }
    if wants_prefix and not has_prefix:
        return {(f"{prefix}.{k}" if f"{prefix}.{k}" in expected else k): v for k, v in state.items()}
    return state


# ---- saving ------------------------------------------------------------------------------------------------------


def write_config(directory: str | os.PathLike, config: AlbertConfig, architecture: str) -> Path:
    """Make `directory` and write config.json there, naming the model class as transformers does."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config.extra["architectures"] = [architecture]
    config.save_pretrained(directory)
    return directory


def save_numpy_state(
    directory: str | os.PathLike,
    config: AlbertConfig,
    architecture: str,
    state: dict[str, np.ndarray],
    *,
    safe_serialization: bool = True,
    max_shard_size: int | str = "5GB",
    replaces: str | None = None,
) -> Path:
    """Write config.json and the weights from a state dict of numpy arrays in PyTorch's names, as
    `save_pretrained` writes a PyTorch model's: how the Flax and TF classes save, so that every class reads
    what they write. `safe_serialization=False` writes pytorch_model.bin. `replaces` ("tf", "flax"): the
    saving class's own format, whose weights left from before are removed (read first, they would give
    the old weights)."""
    limit = shard_bytes(max_shard_size)
    directory = write_config(directory, config, architecture)
    if "predictions.bias" in state:  # the decoder's bias under its name too: transformers' TF classes read it
        state = state | {"predictions.decoder.bias": state["predictions.bias"]}
    tensors, held = {}, set()
    for key, value in state.items():
        array = np.asarray(value)
        # A copy only where needed: an array a name before holds too (the decoder bias, which torch's writers
        # refuse to share) or a strided view; the writers only read the rest.
        if array.ctypes.data in held or not array.flags.c_contiguous:
            array = np.array(array, copy=True, order="C")
        held.add(array.ctypes.data)
        with warnings.catch_warnings():  # read-only arrays (jax's) are only read here
            warnings.filterwarnings("ignore", message=".*not writ", category=UserWarning)
            tensors[key] = torch.from_numpy(array)
    write_weights(directory, tensors, safe_serialization, limit, replaces=(replaces,) if replaces else ())
    return directory


def save_pretrained(
    model: AlbertPreTrainedModel,
    directory: str | os.PathLike,
    *,
    safe_serialization: bool = True,
    max_shard_size: int | str = "5GB",
    state_dict: dict[str, torch.Tensor] | None = None,
    variant: str | None = None,
    save_function: Any = None,
) -> Path:
    """Write config.json and the weights, tied tensors once, each file replaced atomically. Weights larger
    than `max_shard_size` (bytes, or "500MB", "2GiB"... as transformers takes it) are written as safetensors
    shards with an index, as transformers shards them. `state_dict`: these tensors instead of the model's
    (as transformers takes them, e.g. gathered from a distributed model); `variant` and `save_function` as
    `write_weights` takes them."""
    if model.__dict__.get("_quantized"):
        raise ValueError(
            f"this model was quantised to {model.__dict__['_quantized']} for inference and cannot be saved; "
            "save the model before quantising it"
        )
    limit = shard_bytes(max_shard_size)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config
    config.extra["architectures"] = [type(model).__name__]
    config.extra["dtype"] = str(model.dtype).removeprefix("torch.")
    config.extra.pop("torch_dtype", None)
    config.save_pretrained(directory)

    state = model.state_dict() if state_dict is None else dict(state_dict)
    for key in aliases(model):
        state.pop(key, None)
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    write_weights(directory, state, safe_serialization, limit, variant, save_function)
    return directory


def write_weights(
    directory: Path,
    state: dict[str, torch.Tensor],
    safe_serialization: bool,
    limit: int,
    variant: str | None = None,
    save_function: Any = None,
    replaces: tuple[str, ...] = (),
) -> None:
    """The weight files of a checkpoint: one file, or shards of at most `limit` bytes with their index, as
    transformers shards them (safetensors, or torch.save files with `safe_serialization=False`, written by
    `save_function` where one is given), named for a `variant` (`variant_name`); weights of another layout
    left from before, of the same variant, are removed, and those of the formats `replaces` names."""
    shards = _split_shards(state, limit)
    single, index_name = (
        (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME)
        if safe_serialization
        else (PT_WEIGHTS_NAME, PT_WEIGHTS_INDEX_NAME)
    )
    single, index_name = variant_name(single, variant), variant_name(index_name, variant)
    written = _shard_names(single, shards)
    for name, tensors in written.items():
        _write_atomically(
            directory / name, lambda tmp, tensors=tensors: _save_tensors(tensors, tmp, save_function)
        )
    if len(shards) > 1:
        _write_index(directory / index_name, written)
    keep = set(written) | ({index_name} if len(shards) > 1 else set())
    _remove_stale(directory, keep, variant, (*_VARIANT_FORMATS, *replaces))


def _shard_names(single: str, shards: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The file of each shard, named as transformers names them: `single` itself for one shard, else
    model-00001-of-00003.safetensors, tf_model-00001-of-00003.h5..."""
    if len(shards) == 1:
        return {single: shards[0]}
    stem, suffix = single.rsplit(".", 1)
    return {f"{stem}-{i:05d}-of-{len(shards):05d}.{suffix}": shard for i, shard in enumerate(shards, 1)}


def _write_index(path: Path, files: dict[str, dict[str, Any]]) -> None:
    """The index of sharded weights, as transformers writes it: their count and total size, and each weight's
    file."""
    tensors = [t for shard in files.values() for t in shard.values()]
    index = {
        "metadata": {
            "total_parameters": sum(math.prod(t.shape) for t in tensors),
            "total_size": sum(t.nbytes for t in tensors),
        },
        "weight_map": {key: name for name, shard in files.items() for key in shard},
    }
    _write_atomically(path, lambda tmp: tmp.write_text(json.dumps(index, indent=2)))


def _remove_stale(
    directory: Path, keep: set[str], variant: str | None = None, formats: tuple[str, ...] = _VARIANT_FORMATS
) -> None:
    """Remove the weights of `formats` (safetensors and .bin of the same variant by default) other than the
    files `keep`: read before or beside what was just written, they would shadow or contradict it. (A
    PyTorch save leaves TF and Flax weights, which these classes read after its; the TF and Flax classes'
    saves remove their own format's, which transformers' TF and Flax classes read first.)"""
    stale = []
    for name in formats:
        single, index, shards = _format_files(name, variant if name in _VARIANT_FORMATS else None)
        stale += [single, index, *(p.name for p in directory.glob(shards))]
    for name in set(stale) - keep:
        (directory / name).unlink(missing_ok=True)


def write_tf_h5(
    directory: Path, layers: list[tuple[str, list[tuple[str, np.ndarray]]]], model_name: str, limit: int
) -> None:
    """tf_model.h5 as transformers' TF classes save it (Keras' HDF5 weights: a group per top-level layer with
    its `weight_names`, each weight at its full name), or shards of at most `limit` bytes (tf_model-00001-
    of-0000N.h5, each weight at its name without the model's, with tf_model.h5.index.json), from `layers`:
    (layer name, [(weight name, array)]). Weights of another layout are removed. Needs h5py."""
    try:
        import h5py
    except ImportError:
        raise ImportError("writing tf_model.h5 needs h5py: pip install h5py (or 'openalbert[tf]')") from None

    def names(values: list[str]) -> np.ndarray:
        return np.array([v.encode("utf8") for v in values])

    # (a weight two layers hold, once)
    weights = {name: array for _, pairs in layers for name, array in pairs}
    shards = _split_shards(weights, limit)  # type: ignore[arg-type]
    if len(shards) == 1:

        def write(tmp: Path) -> None:
            with h5py.File(tmp, "w") as f:
                f.attrs["backend"], f.attrs["keras_version"] = "tensorflow", "2.15.0"
                f.attrs["layer_names"] = names([layer for layer, _ in layers])
                for layer, pairs in layers:
                    group = f.create_group(layer)
                    group.attrs["weight_names"] = names([name for name, _ in pairs])
                    for name, array in pairs:
                        group.create_dataset(name, data=array)

        _write_atomically(directory / TF2_WEIGHTS_NAME, write)
        _remove_stale(directory, {TF2_WEIGHTS_NAME}, formats=(*_VARIANT_FORMATS, "tf"))
        return
    files = _shard_names(TF2_WEIGHTS_NAME, shards)
    for file, shard in files.items():

        def write_shard(tmp: Path, shard: dict[str, np.ndarray] = shard) -> None:
            inner = {name.removeprefix(f"{model_name}/"): array for name, array in sorted(shard.items())}
            with h5py.File(tmp, "w") as f:
                for name, array in inner.items():
                    f.create_dataset(name, data=array)
                f.attrs["layer_names"] = names(list(inner))

        _write_atomically(directory / file, write_shard)
    _write_index(directory / TF2_WEIGHTS_INDEX_NAME, files)
    _remove_stale(directory, {*files, TF2_WEIGHTS_INDEX_NAME}, formats=(*_VARIANT_FORMATS, "tf"))


_SIZE_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
}


def shard_bytes(size: int | str) -> int:
    """`max_shard_size` in bytes: an int, or a number with a unit ("5GB", "500MB", "2GiB")."""
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B)\s*", str(size).upper())
    if not match or float(match[1]) <= 0:
        raise ValueError(
            f"max_shard_size must be a positive number of bytes or like '5GB' / '500MB', got {size!r}"
        )
    return int(float(match[1]) * _SIZE_UNITS[match[2]])


def _split_shards(state: dict[str, torch.Tensor], limit: int) -> list[dict[str, torch.Tensor]]:
    """Consecutive groups of tensors of at most `limit` bytes each (a larger tensor alone)."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        if shards[-1] and size + tensor.nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += tensor.nbytes
    return shards


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, save_function: Any = None) -> None:
    if path.name.startswith("pytorch_model"):  # (pytorch_model.bin and its shards, .tmp while written)
        (save_function or torch.save)(tensors, path)
    else:
        from safetensors.torch import save_file

        save_file(tensors, path, metadata={"format": "pt"})


def current_umask() -> int:
    """The process's umask, read from /proc where it shows it (Linux 4.7+): setting it to read it, the
    portable way, leaves an instant in which a file another thread creates gets the wrong permissions."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_atomically(target: Path, write: Any) -> None:
    """`write(tmp)` then rename tmp to `target`, so a reader never sees half a file. The file gets the
    permissions the umask gives a new file (safetensors' writer makes it private, 0600)."""
    tmp = target.with_name(target.name + ".tmp")
    write(tmp)
    os.chmod(tmp, 0o666 & ~current_umask())
    os.replace(tmp, target)
