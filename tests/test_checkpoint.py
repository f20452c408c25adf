"""Finding and reading checkpoints: local formats, the offline HF cache, bad files, input errors, dtypes."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tests.conftest import NO_NETWORK_PRELUDE, TINY

import openalbert
from openalbert import (
    AlbertConfig,
    AlbertForMaskedLM,
    AlbertForSequenceClassification,
    AlbertModel,
    checkpoint,
)


@pytest.fixture
def mlm_dir(tmp_path):
    torch.manual_seed(0)
    model = AlbertForMaskedLM(AlbertConfig(**TINY)).eval()
    model.save_pretrained(tmp_path / "mlm")
    return tmp_path / "mlm", model


def ids(batch: int = 2, length: int = 9) -> torch.Tensor:
    return torch.randint(5, TINY["vocab_size"], (batch, length), generator=torch.Generator().manual_seed(1))


def same_logits(a, b, x=None) -> None:
    x = ids() if x is None else x
    with torch.no_grad():
        torch.testing.assert_close(a(x).logits, b(x).logits, atol=1e-6, rtol=0)


def test_round_trip_ties_decoder_and_stores_it_once(mlm_dir):
    path, model = mlm_dir
    loaded = AlbertForMaskedLM.from_pretrained(path)
    assert loaded.predictions.decoder.weight is loaded.albert.embeddings.word_embeddings.weight
    assert loaded.predictions.decoder.bias is loaded.predictions.bias
    from safetensors import safe_open

    with safe_open(path / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert "predictions.decoder.weight" not in keys and "albert.embeddings.word_embeddings.weight" in keys
    same_logits(model, loaded)
    assert json.loads((path / "config.json").read_text())["architectures"] == ["AlbertForMaskedLM"]


@pytest.mark.parametrize("head", ["AlbertForMaskedLM", "AlbertForPreTraining"])
def test_untied_decoder_loads_and_saves_as_transformers_does(tmp_path, head):
    # tie_word_embeddings=false: the decoder has a weight of its own, but its bias is still predictions.bias.
    import transformers
    from safetensors import safe_open

    torch.manual_seed(0)
    reference = getattr(transformers, head)(
        transformers.AlbertConfig(**TINY, tie_word_embeddings=False)
    ).eval()
    reference.save_pretrained(tmp_path / "theirs")
    model, info = getattr(openalbert, head).from_pretrained(tmp_path / "theirs", output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    decoder = model.predictions.decoder
    assert decoder.weight is not model.albert.embeddings.word_embeddings.weight
    assert decoder.bias is model.predictions.bias
    x = ids()
    with torch.no_grad():
        expected = reference(x)[0]
        torch.testing.assert_close(model(x)[0], expected, atol=1e-5, rtol=0)

    model.save_pretrained(tmp_path / "ours")
    keys = {}
    for side in ("theirs", "ours"):
        with safe_open(tmp_path / side / "model.safetensors", "pt") as f:
            keys[side] = set(f.keys())
    assert keys["ours"] == keys["theirs"]
    again = getattr(transformers, head).from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x)[0], expected, atol=1e-5, rtol=0)


def test_loading_info_and_config_as_transformers_report_them(tmp_path):
    import transformers

    config = transformers.AlbertConfig(**TINY, num_labels=3)
    transformers.AlbertForPreTraining(config).save_pretrained(tmp_path / "pretraining")
    transformers.AlbertForSequenceClassification(config).save_pretrained(tmp_path / "classifier")
    cases = [
        ("AlbertModel", "pretraining", {}),  # the heads' weights are reported unused
        ("AlbertForSequenceClassification", "classifier", {"num_labels": 5, "ignore_mismatched_sizes": True}),
    ]
    for head, directory, options in cases:
        infos = [
            getattr(library, head).from_pretrained(tmp_path / directory, output_loading_info=True, **options)[
                1
            ]
            for library in (transformers, openalbert)
        ]
        for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
            assert sorted(infos[1][key]) == sorted(infos[0][key]), (head, key)
    # transformers' config object, as its users pass it
    model = openalbert.AlbertForSequenceClassification.from_pretrained(tmp_path / "classifier", config=config)
    assert isinstance(model.config, AlbertConfig) and model.config.num_labels == 3
    assert openalbert.AlbertModel(config).config.num_labels == 3  # a constructor converts it too


@pytest.mark.parametrize("device", ["meta", "xpu"])
def test_a_device_this_torch_cannot_run_on_is_named(mlm_dir, device):
    if device == "xpu" and torch.xpu.is_available():
        pytest.skip("this machine has an XPU")
    with pytest.raises(ValueError, match=f"device '{device}' is not available"):
        AlbertForMaskedLM.from_pretrained(mlm_dir[0], device=device)


def test_sharded_safetensors_with_index(mlm_dir, tmp_path):
    path, model = mlm_dir
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k not in model._tied_weights_keys}
    keys = sorted(state)
    shards = {
        "model-00001-of-00002.safetensors": keys[: len(keys) // 2],
        "model-00002-of-00002.safetensors": keys[len(keys) // 2 :],
    }
    out = tmp_path / "sharded"
    out.mkdir()
    model.config.save_pretrained(out)
    for name, names in shards.items():
        save_file({k: state[k] for k in names}, out / name)
    weight_map = {k: name for name, names in shards.items() for k in names}
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    same_logits(model, AlbertForMaskedLM.from_pretrained(out))


def test_pytorch_model_bin(mlm_dir, tmp_path):
    _, model = mlm_dir
    model.save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert (tmp_path / "bin" / "pytorch_model.bin").is_file()
    same_logits(model, AlbertForMaskedLM.from_pretrained(tmp_path / "bin"))


def test_sharded_pytorch_model_bin_as_transformers_writes_it(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    theirs = transformers.AlbertForMaskedLM(transformers.AlbertConfig(**TINY)).eval()
    theirs.save_pretrained(tmp_path, safe_serialization=False, max_shard_size="20KB")
    assert (tmp_path / "pytorch_model.bin.index.json").is_file()
    assert len(list(tmp_path.glob("pytorch_model-*.bin"))) > 1
    ours = AlbertForMaskedLM.from_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids()).logits, theirs(ids()).logits, atol=1e-5, rtol=0)
    next(tmp_path.glob("pytorch_model-*.bin")).unlink()
    with pytest.raises(FileNotFoundError, match="lists shard pytorch_model-"):
        AlbertForMaskedLM.from_pretrained(tmp_path)


def test_a_hub_repo_is_asked_for_one_format_of_weights(mlm_dir, tmp_path, monkeypatch):
    # A repo that holds its weights as safetensors and as .bin (as most do) gives the safetensors alone; one
    # with .bin shards only gives those, at the second ask.
    path, model = mlm_dir
    repos = {"both": tmp_path / "both", "bins": tmp_path / "bins"}
    model.save_pretrained(repos["both"])
    model.save_pretrained(repos["both"] / "bin", safe_serialization=False)
    (repos["both"] / "bin" / "pytorch_model.bin").rename(repos["both"] / "pytorch_model.bin")
    transformers = pytest.importorskip("transformers")
    transformers.AlbertForMaskedLM.from_pretrained(path).save_pretrained(
        repos["bins"], safe_serialization=False, max_shard_size="20KB"
    )
    asked = []

    def from_hub(repo_id: str, patterns: list[str], **hub: object) -> Path:
        asked.append((repo_id, list(patterns)))
        out = tmp_path / "fetched" / f"{repo_id}-{len(asked)}"
        out.mkdir(parents=True)
        for f in repos[repo_id.split("/")[1]].iterdir():
            if f.is_file() and any(fnmatch.fnmatch(f.name, p) for p in patterns):
                shutil.copy(f, out / f.name)
        return out

    monkeypatch.setattr(checkpoint, "_from_hub", from_hub)
    same_logits(model, AlbertForMaskedLM.from_pretrained("someone/both"))
    assert len(asked) == 1 and not any(fnmatch.fnmatch("pytorch_model.bin", p) for p in asked[0][1])
    same_logits(model, AlbertForMaskedLM.from_pretrained("someone/bins"))
    assert len(asked) == 3 and "pytorch_model-*.bin" in asked[-1][1]


def test_bare_model_from_head_checkpoint_and_head_from_bare(mlm_dir, tmp_path, caplog):
    path, model = mlm_dir
    bare = AlbertModel.from_pretrained(path)  # drops the `albert.` prefix, ignores the MLM head
    x = ids()
    with torch.no_grad():
        torch.testing.assert_close(bare(x).last_hidden_state, model.albert(x).last_hidden_state)
    bare.save_pretrained(tmp_path / "bare")
    with caplog.at_level(logging.WARNING, logger="openalbert"):
        clf, info = AlbertForSequenceClassification.from_pretrained(
            tmp_path / "bare", output_loading_info=True
        )
    assert info["missing_keys"] == ["classifier.bias", "classifier.weight"]
    assert "classifier.weight" in caplog.text and "newly initialised" in caplog.text


def test_num_labels_override_and_size_mismatch(tmp_path):
    AlbertForSequenceClassification(AlbertConfig(**TINY, num_labels=3)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"classifier\.weight \(3, 32\) vs \(5, 32\)"):
        AlbertForSequenceClassification.from_pretrained(tmp_path, num_labels=5)
    model = AlbertForSequenceClassification.from_pretrained(
        tmp_path, num_labels=5, ignore_mismatched_sizes=True
    )
    assert model.classifier.out_features == 5


def test_missing_path_and_corrupt_files(mlm_dir, tmp_path):
    path, _ = mlm_dir
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        AlbertForMaskedLM.from_pretrained(tmp_path / "does-not-exist")
    blob = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        AlbertForMaskedLM.from_pretrained(path)
    (path / "model.safetensors").unlink()
    (path / "pytorch_model.bin").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="pytorch_model.bin is corrupt"):
        AlbertForMaskedLM.from_pretrained(path)
    (path / "pytorch_model.bin").unlink()
    with pytest.raises(FileNotFoundError, match="no weights"):
        AlbertForMaskedLM.from_pretrained(path)


def _fake_hub_cache(cache, repo_id: str, model) -> None:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    model.save_pretrained(repo / "snapshots" / commit)


NO_NETWORK = NO_NETWORK_PRELUDE + textwrap.dedent(
    """
    import sys
    import torch, openalbert
    model = openalbert.AlbertForMaskedLM.from_pretrained(sys.argv[1])
    x = torch.arange(5, 14)[None]
    print(float(model(x).logits.sum()))
    """
)


@pytest.mark.parametrize(
    "repo_id,name",
    [("someone/tiny-albert", "someone/tiny-albert"), ("albert/albert-base-v2", "albert-base-v2")],
)
def test_hub_id_from_offline_cache_never_touches_network(mlm_dir, tmp_path, repo_id, name):
    _, model = mlm_dir
    cache = tmp_path / "hub"
    _fake_hub_cache(cache, repo_id, model)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-c", NO_NETWORK, name], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with torch.no_grad():
        expected = float(model(torch.arange(5, 14)[None]).logits.sum())
    assert float(out.stdout) == pytest.approx(expected, abs=1e-4)
    # A hub id that is not in the cache fails with a message naming it, still offline.
    missing = subprocess.run(
        [sys.executable, "-c", NO_NETWORK, "someone/absent"], env=env, capture_output=True, text=True
    )
    assert missing.returncode != 0 and "'someone/absent' was not found" in missing.stderr


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(input_ids=torch.ones(1, 65, dtype=torch.long)), r"sequence length 65 exceeds.*\(64\)"),
        (dict(input_ids=torch.tensor([[2, 99, 3]])), r"input_ids holds 99.*\[0, 98\]"),
        (dict(input_ids=torch.tensor([[2, -1, 3]])), r"input_ids holds -1"),
        (dict(input_ids=torch.ones(0, 5, dtype=torch.long)), "empty batch"),
        (
            dict(input_ids=torch.tensor([[2, 5, 3]]), token_type_ids=torch.tensor([[0, 2, 0]])),
            r"token_type_ids holds 2.*\[0, 1\]",
        ),
        (dict(), "exactly one of input_ids and inputs_embeds"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, message):
    model = AlbertModel(AlbertConfig(**TINY))
    with pytest.raises(ValueError, match=message):
        model(**kwargs)


# Documented tolerances of half precision against fp32 on the same weights (max abs on logits).
HALF_TOLERANCE = {torch.bfloat16: 5e-2, torch.float16: 1e-2}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_forward_on_cpu(mlm_dir, dtype):
    path, model = mlm_dir
    half = AlbertForMaskedLM.from_pretrained(path, dtype=str(dtype).removeprefix("torch."))
    assert half.dtype == dtype
    x = ids(3, 17)
    mask = torch.ones_like(x)
    mask[0, 10:] = 0
    with torch.no_grad():
        expected = model(x, attention_mask=mask).logits
        got = half(x, attention_mask=mask).logits
    assert got.dtype == dtype
    assert (got.float() - expected).abs().max() <= HALF_TOLERANCE[dtype]
    assert (got.float().argmax(-1) == expected.argmax(-1)).float().mean() > 0.9


def test_default_model_name_is_exported():
    assert openalbert.DEFAULT_MODEL.startswith("openalbert/")


def test_tf_and_flax_files_are_read_or_named(tmp_path, monkeypatch):
    # A directory with only transformers' TF or Flax weights: read with h5py / flax; without them, a named need.
    openalbert.AlbertConfig(**TINY).save_pretrained(tmp_path)
    (tmp_path / "tf_model.h5").write_bytes(b"not hdf5")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match="needs h5py: pip install h5py"):
        openalbert.AlbertForMaskedLM.from_pretrained(tmp_path)
    (tmp_path / "tf_model.h5").unlink()
    with pytest.raises(
        FileNotFoundError, match="expected one of model.safetensors.*tf_model.h5.*flax_model.msgpack"
    ):
        openalbert.AlbertForMaskedLM.from_pretrained(tmp_path)


def test_loading_draws_random_numbers_only_for_weights_the_checkpoint_lacks(mlm_dir, tmp_path):
    path, model = mlm_dir
    before = torch.random.get_rng_state()
    loaded = AlbertForMaskedLM.from_pretrained(path)  # every weight is in the checkpoint
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(not t.is_meta for t in loaded.state_dict().values())
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name

    # A new head: its weights are drawn as the model's initialisation draws them, the rest is loaded.
    config = AlbertConfig(**TINY, initializer_range=0.5, num_labels=64)
    AlbertModel(config).save_pretrained(tmp_path / "bare")
    clf = AlbertForSequenceClassification.from_pretrained(tmp_path / "bare", num_labels=64)
    assert not torch.equal(torch.random.get_rng_state(), before)
    assert clf.classifier.weight.std().item() == pytest.approx(0.5, rel=0.1)
    assert not clf.classifier.bias.any()
    # A pretraining checkpoint without its output bias: zeros, and still the decoder's bias.
    state = {
        k: v
        for k, v in model.state_dict().items()
        if k not in ("predictions.bias", "predictions.decoder.bias")
    }
    (tmp_path / "nobias").mkdir()
    model.config.save_pretrained(tmp_path / "nobias")
    save_file(
        {k: v.contiguous() for k, v in state.items() if k != "predictions.decoder.weight"},
        tmp_path / "nobias" / "model.safetensors",
    )
    again = AlbertForMaskedLM.from_pretrained(tmp_path / "nobias")
    assert not again.predictions.bias.any() and again.predictions.decoder.bias is again.predictions.bias
    assert again.predictions.decoder.weight is again.albert.embeddings.word_embeddings.weight
    torch.testing.assert_close(again.predictions.dense.weight, model.predictions.dense.weight)


def test_a_loaded_model_trains_without_touching_its_checkpoint(mlm_dir):
    path, _ = mlm_dir
    on_disk = (path / "model.safetensors").read_bytes()
    model = AlbertForMaskedLM.from_pretrained(path).train()
    x = ids()
    model(x, labels=x).loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert (path / "model.safetensors").read_bytes() == on_disk
    assert not torch.equal(
        model.albert.embeddings.word_embeddings.weight,
        AlbertForMaskedLM.from_pretrained(path).albert.embeddings.word_embeddings.weight,
    )


def test_loading_leaves_torch_init_working_and_imports_no_compiler(mlm_dir, monkeypatch):
    path, _ = mlm_dir
    original = torch.nn.init.normal_
    monkeypatch.setattr(
        openalbert.heads.AlbertMLMHead, "__init__", lambda self, config: 1 / 0
    )  # the build fails
    with pytest.raises(ZeroDivisionError):
        AlbertForMaskedLM.from_pretrained(path)
    assert torch.nn.init.normal_ is original
    # In a fresh process, loading runs no meta-device initialisation, whose first call imports
    # torch._dynamo (seconds of every CLI call).
    code = textwrap.dedent(f"""
        import sys, openalbert
        openalbert.AlbertForMaskedLM.from_pretrained({str(path)!r})
        openalbert.AlbertForSequenceClassification.from_pretrained({str(path)!r}, num_labels=3)
        print("torch._dynamo" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_a_model_built_in_another_thread_during_loading_is_initialised(mlm_dir):
    path, _ = mlm_dir
    original = torch.nn.init.normal_
    inside, built = threading.Event(), threading.Event()
    real_init = openalbert.heads.AlbertMLMHead.__init__

    def slow_init(self, config):  # holds the loading thread inside the meta-device build
        inside.set()
        assert built.wait(30)
        real_init(self, config)

    weights = {}

    def build_elsewhere():
        assert inside.wait(30)
        weights["linear"] = torch.nn.Linear(64, 64).weight.detach()
        weights["normal"] = torch.nn.init.normal_(torch.zeros(1000))
        built.set()

    other = threading.Thread(target=build_elsewhere)
    other.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(openalbert.heads.AlbertMLMHead, "__init__", slow_init)
            loaded = AlbertForMaskedLM.from_pretrained(path)
    finally:
        built.set()
        other.join()
    assert weights["linear"].abs().sum() > 0 and weights["linear"].std() > 0.01  # initialised, not skipped
    assert weights["normal"].std() > 0.5
    assert torch.nn.init.normal_ is original
    assert torch.equal(loaded.predictions.decoder.weight, loaded.albert.embeddings.word_embeddings.weight)


def test_a_loaded_model_saves_over_its_own_checkpoint(mlm_dir):
    # The loaded tensors are read from the file as they are touched: saving into the same directory must not
    # change them under the model (the file is replaced, not rewritten in place).
    path, model = mlm_dir
    loaded = AlbertForMaskedLM.from_pretrained(path)
    with torch.no_grad():
        loaded.predictions.bias.add_(1.0)
    loaded.save_pretrained(path)
    loaded.save_pretrained(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded.predictions.bias, model.predictions.bias + 1.0)
    same_logits(loaded, AlbertForMaskedLM.from_pretrained(path))


def test_saved_weights_are_readable_as_the_umask_allows(tmp_path):
    # safetensors writes its file 0600; other users of a shared model directory could not read the weights
    import stat

    previous = os.umask(0o022)
    try:
        openalbert.AlbertModel(AlbertConfig(**TINY)).save_pretrained(tmp_path / "m")
        openalbert.AlbertModel(AlbertConfig(**TINY)).save_pretrained(tmp_path / "s", max_shard_size="20KB")
    finally:
        os.umask(previous)
    files = [p for p in (tmp_path / "m").iterdir()] + [p for p in (tmp_path / "s").iterdir()]
    assert len(files) > 3 and {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}


def test_the_umask_is_read_without_setting_it(monkeypatch):
    # Setting the umask to read it gave a file another thread created in that instant other permissions.
    status = Path("/proc/self/status")
    if not status.is_file() or "Umask:" not in status.read_text():
        pytest.skip("this system does not show the umask in /proc")
    previous = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda mask: pytest.fail("os.umask was called"))
        assert checkpoint.current_umask() == 0o027
    finally:
        monkeypatch.undo()
        os.umask(previous)


def test_numpy_states_are_written_without_needless_copies(tmp_path, monkeypatch):
    # The TF and Flax classes save through save_numpy_state: read-only arrays (jax's) and one array under
    # two names (the TF decoder bias) are written as given, and only the shared one is copied.
    import warnings

    import numpy as np
    from safetensors.torch import load_file

    from openalbert import checkpoint

    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    weight.flags.writeable = False
    bias = np.ones(4, dtype=np.float32)
    strided = np.arange(8, dtype=np.float32)[::2]
    written = {}
    real = checkpoint.write_weights
    monkeypatch.setattr(
        checkpoint, "write_weights", lambda d, t, *a, **k: (written.update(t), real(d, t, *a, **k))
    )
    state = {"a.weight": weight, "b.bias": bias, "c.bias": bias, "d": strided}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checkpoint.save_numpy_state(tmp_path, AlbertConfig(**TINY), "AlbertModel", state)
    assert np.shares_memory(written["a.weight"].numpy(), weight)
    assert np.shares_memory(written["b.bias"].numpy(), bias)
    assert not np.shares_memory(written["c.bias"].numpy(), bias)
    loaded = load_file(tmp_path / "model.safetensors")
    for key, value in state.items():
        assert np.array_equal(loaded[key].numpy(), value)


def test_weight_variants_as_transformers_names_them(mlm_dir, tmp_path, monkeypatch):
    # save_pretrained(variant=) writes beside the plain weights without touching them; from_pretrained(variant=)
    # reads them, from us or from transformers, single or sharded, and from a hub repo asked for them alone.
    transformers = pytest.importorskip("transformers")
    _, model = mlm_dir
    model.save_pretrained(tmp_path)
    model.half().save_pretrained(tmp_path, variant="fp16", max_shard_size="20KB")
    model.float()
    assert (tmp_path / "model.safetensors").is_file()
    assert (tmp_path / "model.safetensors.index.fp16.json").is_file()
    assert len(list(tmp_path.glob("model.fp16-*-of-*.safetensors"))) > 1
    theirs = transformers.AlbertForMaskedLM.from_pretrained(tmp_path, variant="fp16")
    rounded = model.half().float()
    same_logits(rounded, AlbertForMaskedLM.from_pretrained(tmp_path, variant="fp16"))
    same_logits(rounded, theirs)
    assert AlbertForMaskedLM.from_pretrained(tmp_path, variant="fp16", dtype="auto").dtype == torch.float16
    model = AlbertForMaskedLM.from_pretrained(tmp_path)
    # The same variant saved again as one file replaces its shards; the plain weights stay.
    model.save_pretrained(tmp_path, variant="fp16")
    assert sorted(p.name for p in tmp_path.glob("model*")) == ["model.fp16.safetensors", "model.safetensors"]
    theirs.float().save_pretrained(tmp_path / "t", variant="v2", safe_serialization=False)
    assert (tmp_path / "t" / "pytorch_model.v2.bin").is_file()
    same_logits(rounded, AlbertForMaskedLM.from_pretrained(tmp_path / "t", variant="v2"))
    with pytest.raises(
        FileNotFoundError, match=r"variant 'fp16'.*model\.fp16\.safetensors.*holds pytorch_model\.v2\.bin$"
    ):
        AlbertForMaskedLM.from_pretrained(tmp_path / "t", variant="fp16")
    with pytest.raises(FileNotFoundError, match=r"'v3'.*holds model\.fp16\.safetensors, model\.safetensors$"):
        AlbertForMaskedLM.from_pretrained(tmp_path, variant="v3")

    asked = []

    def from_hub(repo_id: str, patterns: list[str], **hub: object) -> Path:
        asked.append(list(patterns))
        out = tmp_path / "fetched" / str(len(asked))
        out.mkdir(parents=True)
        for f in tmp_path.iterdir():
            if f.is_file() and any(fnmatch.fnmatch(f.name, p) for p in patterns):
                shutil.copy(f, out / f.name)
        return out

    monkeypatch.setattr(checkpoint, "_from_hub", from_hub)
    same_logits(model, AlbertForMaskedLM.from_pretrained("someone/repo", variant="fp16"))
    assert len(asked) == 1 and "model.fp16.safetensors" in asked[0] and "model.safetensors" not in asked[0]
