"""transformers' from_pretrained / save_pretrained options that users' code passes, against transformers 4.57.1:
dtype and device by their transformers names (torch_dtype, device_map), config fields as keyword arguments
(output_hidden_states, output_attentions, return_dict), the hub download options (revision, cache_dir,
local_files_only, subfolder), sharded saving, and the parameter counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from tests.conftest import NO_NETWORK_PRELUDE, TINY

import openalbert
from openalbert import AlbertConfig, AlbertForMaskedLM, AlbertForSequenceClassification, AlbertModel

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny sequence classifier saved by transformers."""
    torch.manual_seed(0)
    model = transformers.AlbertForSequenceClassification(
        transformers.AlbertConfig(**TINY, num_labels=3)
    ).eval()
    path = tmp_path_factory.mktemp("options") / "cls"
    model.save_pretrained(path)
    return path


def batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(5, TINY["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_torch_dtype_and_device_map_are_dtype_and_device(saved):
    ours = AlbertForSequenceClassification.from_pretrained(
        saved, torch_dtype=torch.bfloat16, device_map="auto"
    )
    assert ours.dtype == torch.bfloat16 and ours.device.type == (
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    for device_map in ("cpu", {"": "cpu"}, -1, torch.device("cpu")):
        assert (
            AlbertForSequenceClassification.from_pretrained(saved, device_map=device_map).device.type == "cpu"
        )
    assert (
        AlbertModel.from_pretrained(saved, torch_dtype="float16", dtype=torch.float16).dtype == torch.float16
    )
    with pytest.raises(ValueError, match="disagree"):
        AlbertModel.from_pretrained(saved, torch_dtype="float16", dtype="bfloat16")
    with pytest.raises(ValueError, match="splits the model"):
        AlbertModel.from_pretrained(saved, device_map={"albert.embeddings": "cpu", "albert.encoder": 0})
    pipe = openalbert.pipeline("fill-mask", torch_dtype="bfloat16", device_map="cpu")
    assert pipe.model.dtype == torch.bfloat16 and pipe.device.type == "cpu"
    model = AlbertModel.from_pretrained(saved, low_cpu_mem_usage=True)
    reference = transformers.AlbertModel.from_pretrained(saved, low_cpu_mem_usage=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch()).pooler_output, reference(**batch()).pooler_output)


@pytest.mark.parametrize(
    "options",
    [
        {"output_hidden_states": True},
        {"output_attentions": True},
        {"output_hidden_states": True, "output_attentions": True, "return_dict": False},
    ],
)
def test_output_options_of_from_pretrained_set_the_forward_defaults(saved, options):
    ours = AlbertForSequenceClassification.from_pretrained(saved, **options)
    theirs = transformers.AlbertForSequenceClassification.from_pretrained(saved, **options).eval()
    with torch.no_grad():
        got, want = ours(**batch()), theirs(**batch())
    if options.get("return_dict") is False:
        assert isinstance(got, tuple) and isinstance(want, tuple) and len(got) == len(want)
        pairs = list(zip(got, want))
    else:
        fields = ("logits", "hidden_states", "attentions")
        pairs = [(getattr(got, f), getattr(want, f)) for f in fields]
    flat = []
    for a, b in pairs:
        if isinstance(b, tuple):
            assert isinstance(a, tuple) and len(a) == len(b)
            flat += list(zip(a, b))
        else:
            assert (a is None) == (b is None)
            flat.append((a, b))
    for a, b in flat:
        if b is not None:
            keep = batch()["attention_mask"].bool()
            if (
                a.dim() == 3 and a.shape[1] == keep.shape[1]
            ):  # hidden states: padded positions differ by design
                a, b = a[keep], b[keep]
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # A call's own argument wins over the config's default.
    with torch.no_grad():
        explicit = ours(**batch(), output_hidden_states=False, output_attentions=False, return_dict=True)
    assert explicit.hidden_states is None and explicit.attentions is None


def test_output_options_round_trip_through_config_json(saved, tmp_path):
    ours = AlbertModel.from_pretrained(saved, output_hidden_states=True)
    ours.save_pretrained(tmp_path / "ours")
    written = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert (
        written["output_hidden_states"] is True and "output_attentions" not in written
    )  # defaults unwritten
    assert transformers.AlbertConfig.from_pretrained(tmp_path / "ours").output_hidden_states is True
    theirs = transformers.AlbertModel.from_pretrained(saved, output_attentions=True)
    theirs.save_pretrained(tmp_path / "theirs")
    assert AlbertConfig.from_pretrained(tmp_path / "theirs").output_attentions is True


def test_pipelines_and_training_read_attributes_whatever_return_dict_says(saved, tmp_path):
    """Code inside the library asks for the output object, so a config with return_dict=False serves it."""
    tokenizer = openalbert.AlbertTokenizer.from_pretrained(openalbert.DEFAULT_MODEL)
    mlm = AlbertForMaskedLM.from_pretrained(openalbert.DEFAULT_MODEL, return_dict=False)
    assert isinstance(mlm(torch.tensor([[2, 50, 4, 3]])), tuple)
    fill = openalbert.pipeline("fill-mask", model=mlm, tokenizer=tokenizer)
    assert fill("The capital of France is [MASK].", top_k=1) == openalbert.pipeline("fill-mask")(
        "The capital of France is [MASK].", top_k=1
    )
    from openalbert.pretraining.run import PretrainingObjective

    labels = torch.full((1, 4), -100)
    labels[0, 2] = 50
    loss = PretrainingObjective(mlm)(torch.tensor([[2, 50, 4, 3]]), labels).loss
    assert torch.isfinite(loss)


def test_parameter_counts_and_config_update_match_transformers(saved):
    ours = AlbertForSequenceClassification.from_pretrained(saved)
    theirs = transformers.AlbertForSequenceClassification.from_pretrained(saved)
    for model in (ours, theirs):
        model.albert.embeddings.requires_grad_(False)
    for options in (
        {},
        {"only_trainable": True},
        {"exclude_embeddings": True},
        {"only_trainable": True, "exclude_embeddings": True},
    ):
        assert ours.num_parameters(**options) == theirs.num_parameters(**options), options
    config, reference = AlbertConfig(), transformers.AlbertConfig()
    config.update({"hidden_dropout_prob": 0.2, "num_labels": 4})
    reference.update({"hidden_dropout_prob": 0.2, "num_labels": 4})
    assert (config.hidden_dropout_prob, config.num_labels) == (
        reference.hidden_dropout_prob,
        reference.num_labels,
    )
    # an unmodelled key is kept, as transformers keeps it (and writes it to config.json)
    config.update({"hiden_size": 3})
    reference.update({"hiden_size": 3})
    assert config.hiden_size == reference.hiden_size == 3 and config.to_dict()["hiden_size"] == 3


@pytest.mark.parametrize("size", ["40KB", 40_000, "0.04MB"])
def test_sharded_save_loads_here_and_in_transformers(saved, tmp_path, size):
    model = AlbertForSequenceClassification.from_pretrained(saved)
    out = tmp_path / "sharded"
    model.save_pretrained(out, max_shard_size=size)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert not (out / "model.safetensors").exists()
    assert index["metadata"]["total_size"] == sum(
        v.numel() * v.element_size() for k, v in model.state_dict().items()
    )
    assert index["metadata"]["total_parameters"] == model.num_parameters()  # (as transformers counts them)
    again = AlbertForSequenceClassification.from_pretrained(out)
    theirs = transformers.AlbertForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**batch()).logits, model(**batch()).logits)
        torch.testing.assert_close(theirs(**batch()).logits, model(**batch()).logits, atol=1e-5, rtol=1e-4)
    model.save_pretrained(out)  # one file again: the shards and their index go
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    with pytest.raises(ValueError, match="max_shard_size"):
        model.save_pretrained(out, max_shard_size="5 parsecs")
    model.save_pretrained(out, max_shard_size="40KB", safe_serialization=False)  # torch.save shards instead
    assert not (out / "model.safetensors").exists() and (out / "pytorch_model.bin.index.json").is_file()


# ---- the hub options, on a local HF cache (no network) --------------------------------------------------------


def _snapshot(cache, repo_id: str, commit: str, model, subfolder: str = "", ref: str | None = None):
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    if ref:
        (repo / "refs" / ref).write_text(commit)
    model.save_pretrained(repo / "snapshots" / commit / subfolder)


NO_NETWORK = NO_NETWORK_PRELUDE + textwrap.dedent(
    """
    import json, sys
    import torch, openalbert
    model = openalbert.AlbertModel.from_pretrained(sys.argv[1], **json.loads(sys.argv[2]))
    print(model.config.hidden_dropout_prob)
    """
)


def test_revision_cache_dir_subfolder_and_local_files_only(tmp_path):
    cache = tmp_path / "hub"
    main, old = "a" * 40, "b" * 40
    _snapshot(
        cache,
        "someone/albert",
        main,
        AlbertModel(AlbertConfig(**TINY | {"hidden_dropout_prob": 0.1})),
        ref="main",
    )
    _snapshot(cache, "someone/albert", old, AlbertModel(AlbertConfig(**TINY | {"hidden_dropout_prob": 0.2})))
    _snapshot(
        cache,
        "someone/albert",
        main,
        AlbertModel(AlbertConfig(**TINY | {"hidden_dropout_prob": 0.3})),
        "part",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}

    def load(**options) -> str:
        out = subprocess.run(
            [sys.executable, "-c", NO_NETWORK, "someone/albert", json.dumps(options)],
            env=env,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip()

    # local_files_only keeps the network away without HF_HUB_OFFLINE; cache_dir without HF_HUB_CACHE
    assert load(cache_dir=str(cache), local_files_only=True) == "0.1"
    assert load(cache_dir=str(cache), local_files_only=True, revision=old) == "0.2"
    assert load(cache_dir=str(cache), local_files_only=True, subfolder="part") == "0.3"
    config = AlbertConfig.from_pretrained(
        "someone/albert", cache_dir=cache, local_files_only=True, revision=old
    )
    assert config.hidden_dropout_prob == 0.2
    tokenizer = openalbert.AlbertTokenizer.from_pretrained(openalbert.DEFAULT_MODEL)
    tokenizer.save_pretrained(cache / "models--someone--albert" / "snapshots" / old / "tok")
    again = openalbert.AlbertTokenizer.from_pretrained(
        "someone/albert", cache_dir=cache, local_files_only=True, revision=old, subfolder="tok"
    )
    assert again("a text")["input_ids"] == tokenizer("a text")["input_ids"]
    missing = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_NETWORK,
            "someone/albert",
            json.dumps(dict(cache_dir=str(cache), local_files_only=True, revision="c" * 40)),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0 and f"at revision {'c' * 40!r}" in missing.stderr
    # a local directory's subfolder
    AlbertModel(AlbertConfig(**TINY)).save_pretrained(tmp_path / "local" / "encoder")
    assert (
        AlbertModel.from_pretrained(tmp_path / "local", subfolder="encoder").config.hidden_size
        == TINY["hidden_size"]
    )
    with pytest.raises(FileNotFoundError, match="no subfolder 'absent'"):
        AlbertModel.from_pretrained(tmp_path / "local", subfolder="absent")


def test_model_helpers_that_adapter_libraries_call(saved):
    ours = AlbertForSequenceClassification.from_pretrained(saved)
    theirs = transformers.AlbertForSequenceClassification.from_pretrained(saved)
    assert ours.name_or_path == theirs.name_or_path == str(saved)
    assert ours.main_input_name == theirs.main_input_name == "input_ids"
    assert ours.supports_gradient_checkpointing and ours.config.model_type == "albert"
    assert ours.base_model is ours.albert and ours.albert.base_model is ours.albert
    buffers = sum(b.numel() * b.element_size() for b in ours.buffers())
    assert ours.get_memory_footprint() == ours.get_memory_footprint(return_buffers=False) + buffers
    assert ours.get_memory_footprint(return_buffers=False) == theirs.get_memory_footprint(
        return_buffers=False
    )
    # Frozen embeddings with gradient checkpointing: the hook gives the layers a graph to recompute.
    ours.train()
    ours.albert.embeddings.requires_grad_(False)
    ours.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert ours.is_gradient_checkpointing
    ours.enable_input_require_grads()
    ours(**batch()).logits.sum().backward()
    layer = ours.albert.encoder.albert_layer_groups[0].albert_layers[0]
    assert layer.ffn.weight.grad is not None and ours.albert.embeddings.word_embeddings.weight.grad is None
    ours.disable_input_require_grads()
    with torch.no_grad():
        assert not ours.get_input_embeddings()(torch.tensor([[1]])).requires_grad
    ours.gradient_checkpointing_disable()
    assert not ours.is_gradient_checkpointing


def test_transformers_loading_and_saving_options_that_were_refused(tmp_path):
    # config attributes of transformers' PretrainedConfig and loader arguments with no effect here: before,
    # "unknown argument"; dtype "float64" and "auto" on weights whose config.json records no dtype
    options = dict(tie_word_embeddings=False, torchscript=False, chunk_size_feed_forward=0, trust_remote_code=True,
                   resume_download=None, _fast_init=True, offload_folder=str(tmp_path), proxies=None)  # fmt: skip
    torch.manual_seed(0)
    saved = tmp_path / "mlm"
    transformers.AlbertForMaskedLM(transformers.AlbertConfig(**TINY)).save_pretrained(saved)
    ours = AlbertForMaskedLM.from_pretrained(saved, **options)
    theirs = transformers.AlbertForMaskedLM.from_pretrained(saved, tie_word_embeddings=False)
    assert ours.config.extra["tie_word_embeddings"] is False and theirs.config.tie_word_embeddings is False
    assert ours.predictions.decoder.weight is not ours.albert.embeddings.word_embeddings.weight
    ids = torch.randint(5, TINY["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(3))
    wide = AlbertForMaskedLM.from_pretrained(saved, dtype="float64")
    with torch.no_grad():
        torch.testing.assert_close(
            wide(ids).logits,
            transformers.AlbertForMaskedLM.from_pretrained(saved, dtype=torch.float64)(ids).logits,
        )
    half = tmp_path / "half"
    AlbertForMaskedLM.from_pretrained(saved, dtype="float16").save_pretrained(half)
    config = json.loads((half / "config.json").read_text())
    config.pop("dtype", None)
    (half / "config.json").write_text(json.dumps(config))
    assert AlbertForMaskedLM.from_pretrained(half, dtype="auto").dtype == torch.float16
    assert transformers.AlbertForMaskedLM.from_pretrained(half, dtype="auto").dtype == torch.float16
    # torch.save shards with their index, as transformers writes them (before: refused)
    ours.save_pretrained(tmp_path / "bins", safe_serialization=False, max_shard_size="20KB")
    names = sorted(p.name for p in (tmp_path / "bins").iterdir())
    assert "pytorch_model.bin.index.json" in names and len([n for n in names if n.endswith(".bin")]) > 1
    for again in (AlbertForMaskedLM.from_pretrained(tmp_path / "bins"),
                  transformers.AlbertForMaskedLM.from_pretrained(tmp_path / "bins")):  # fmt: skip
        with torch.no_grad():
            torch.testing.assert_close(again.eval()(ids).logits, ours(ids).logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="does not upload models"):
        ours.save_pretrained(tmp_path / "hub", push_to_hub=True)


def test_use_safetensors_picks_the_weights_as_transformers(tmp_path, monkeypatch):
    # A directory with model.safetensors (weights A) and pytorch_model.bin (weights B): use_safetensors=False
    # read A before, silently.
    both = tmp_path / "both"
    a = AlbertModel(AlbertConfig(**TINY)).eval()
    a.save_pretrained(both)
    b = AlbertModel(AlbertConfig(**TINY)).eval()
    torch.save(b.state_dict(), both / "pytorch_model.bin")
    ids = batch()["input_ids"]  # (no padding: transformers computes it, we leave it at zero)

    def hidden(model) -> torch.Tensor:
        with torch.no_grad():
            return model(ids).last_hidden_state

    for options, source in (({}, a), ({"use_safetensors": False}, b), ({"use_safetensors": True}, a)):
        ours = AlbertModel.from_pretrained(both, **options)
        theirs = transformers.AlbertModel.from_pretrained(both, **options)
        torch.testing.assert_close(hidden(ours), hidden(source), atol=1e-5, rtol=0)
        torch.testing.assert_close(hidden(ours), hidden(theirs), atol=1e-5, rtol=0)
    bin_only = tmp_path / "bin"
    b.save_pretrained(bin_only, safe_serialization=False)
    with pytest.raises(
        FileNotFoundError,
        match=r"expected one of model.safetensors, model.safetensors.index.json \(it holds pytorch_model.bin",
    ):
        AlbertModel.from_pretrained(bin_only, use_safetensors=True)
    # from the HF cache too: the .bin is what is asked for
    cache = tmp_path / "hub"
    _snapshot(cache, "someone/both", "c" * 40, a, ref="main")
    torch.save(
        b.state_dict(), cache / "models--someone--both" / "snapshots" / ("c" * 40) / "pytorch_model.bin"
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ours = AlbertModel.from_pretrained("someone/both", cache_dir=cache, use_safetensors=False)
    torch.testing.assert_close(hidden(ours), hidden(b), atol=1e-5, rtol=0)


def test_format_flags_order_the_formats_read():
    from openalbert.checkpoint import weight_formats

    assert weight_formats({}) == ("safetensors", "pt", "tf", "flax")
    assert weight_formats({"from_tf": True}) == ("tf", "safetensors", "pt", "flax")
    assert weight_formats({"from_flax": True, "use_safetensors": False}) == ("flax", "pt", "tf")
    options = {"use_safetensors": True, "from_pt": True, "revision": "main"}
    assert weight_formats(options) == ("safetensors",) and options == {"revision": "main"}


@pytest.mark.parametrize(
    "head", ["AlbertForMaskedLM", "AlbertForPreTraining", "AlbertForSequenceClassification"]
)
def test_loading_info_names_what_transformers_names(tmp_path, head):
    # A tied name is missing with the weight it names: predictions.decoder.bias was left out.
    transformers.AlbertModel(transformers.AlbertConfig(**TINY)).save_pretrained(tmp_path)
    _, theirs = getattr(transformers, head).from_pretrained(tmp_path, output_loading_info=True)
    _, ours = getattr(openalbert, head).from_pretrained(tmp_path, output_loading_info=True)
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        assert sorted(ours[key]) == sorted(theirs[key]), key


def test_state_dict_gives_the_weights(saved):
    # transformers' from_pretrained(None, config=, state_dict=); with a path (as older transformers took it),
    # the path's config and these weights
    source = AlbertForSequenceClassification.from_pretrained(saved)
    state = {k: v + 0.01 for k, v in source.state_dict().items()}
    ids = batch()["input_ids"]
    their_config = transformers.AlbertConfig.from_pretrained(saved)
    expected = transformers.AlbertForSequenceClassification.from_pretrained(
        None, config=their_config, state_dict=state
    ).eval()
    with torch.no_grad():
        want = expected(ids).logits
        for model in (
            AlbertForSequenceClassification.from_pretrained(saved, state_dict=state),
            AlbertForSequenceClassification.from_pretrained(None, config=source.config, state_dict=state),
        ):
            torch.testing.assert_close(model(ids).logits, want, atol=1e-5, rtol=0)
    model.classifier.weight.data.zero_()
    assert state["classifier.weight"].abs().sum() > 0  # the caller's tensors are copied, not taken
    with pytest.raises(
        ValueError, match=r"from_pretrained\(None\) needs the weights as state_dict= and config="
    ):
        AlbertForSequenceClassification.from_pretrained(None, state_dict=state)


@pytest.mark.parametrize(
    "variables",
    [
        {"HF_HUB_CACHE": "~/c/hub"},
        {"HF_HUB_CACHE": "$CACHE_ROOT/hub"},
        {"HF_HOME": "~/c"},
        {"HUGGINGFACE_HUB_CACHE": "~/c/hub"},
        {"TRANSFORMERS_CACHE": "~/c/hub", "HF_HUB_CACHE": "~/elsewhere"},  # (transformers' own comes first)
        {"XDG_CACHE_HOME": "~/c"},
    ],
    ids=["tilde", "variable", "home", "legacy-hub", "transformers-cache", "xdg"],
)
def test_the_cache_is_found_where_transformers_finds_it(tmp_path, monkeypatch, variables):
    # ~ and $VARS were not expanded, and the legacy variables were not read: nothing was found offline
    root = tmp_path / "c"
    xdg = "XDG_CACHE_HOME" in variables
    _snapshot(
        root / ("huggingface/hub" if xdg else "hub"),
        "someone/albert",
        "d" * 40,
        AlbertModel(AlbertConfig(**TINY)),
        ref="main",
    )
    for name in ("HF_HUB_CACHE", "HF_HOME", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "XDG_CACHE_HOME",
                 "PYTORCH_TRANSFORMERS_CACHE", "PYTORCH_PRETRAINED_BERT_CACHE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CACHE_ROOT", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert AlbertModel.from_pretrained("someone/albert").config.hidden_size == TINY["hidden_size"]
    with pytest.raises(ValueError, match="force_download=True needs the hub"):
        AlbertModel.from_pretrained("someone/albert", force_download=True)


def test_transformers_keyword_names_and_push_to_hub(tmp_path):
    from openalbert.config import NO_UPLOAD

    model = AlbertModel(AlbertConfig(**TINY))
    model.save_pretrained(save_directory=tmp_path / "m")
    model.config.save_pretrained(save_directory=tmp_path / "c")
    again = AlbertModel.from_pretrained(pretrained_model_name_or_path=tmp_path / "m")
    assert (
        AlbertConfig.from_pretrained(pretrained_model_name_or_path=tmp_path / "c").hidden_size
        == TINY["hidden_size"]
    )
    assert again.config.hidden_size == TINY["hidden_size"]
    for thing in (model, model.config):
        with pytest.raises(NotImplementedError, match="does not upload"):
            thing.push_to_hub("someone/albert")
    with pytest.raises(NotImplementedError, match=NO_UPLOAD.split(";")[0]):
        model.config.save_pretrained(tmp_path / "c", push_to_hub=True)
