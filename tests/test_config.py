"""AlbertConfig: defaults, presets, validation, and config.json both ways with transformers."""

from __future__ import annotations

import json

import pytest
import torch
from tests.conftest import TINY

import openalbert
from openalbert import AlbertConfig

transformers = pytest.importorskip("transformers")


def test_defaults_are_albert_base_v2():
    assert AlbertConfig() == AlbertConfig.from_preset("albert-base-v2")
    c = AlbertConfig()
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == (
        768,
        12,
        12,
        3072,
    )
    assert (c.embedding_size, c.vocab_size, c.hidden_act) == (128, 30000, "gelu_new")


def test_albert_base_v2_backbone_has_11_683_584_parameters():
    model = openalbert.AlbertModel(AlbertConfig.from_preset("albert-base-v2"))
    assert model.num_parameters() == 11_683_584


@pytest.mark.parametrize("name", sorted(openalbert.PRESETS))
def test_presets_build_and_match_known_sizes(name):
    c = AlbertConfig.from_preset(name)
    size = name.split("-")[0]
    assert c.hidden_size == {"base": 768, "large": 1024, "xlarge": 2048, "xxlarge": 4096}[size]
    assert c.hidden_act == ("gelu" if name.endswith("v1") else "gelu_new")
    # also readable under the hub names
    assert AlbertConfig.from_preset(f"albert/albert-{name}") == c


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="albert-base-v2"):
        AlbertConfig.from_preset("albert-huge")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            dict(num_hidden_layers=4, num_hidden_groups=5),
            r"num_hidden_groups \(5\) cannot exceed num_hidden_layers \(4\)",
        ),
        (dict(hidden_size=768, num_attention_heads=10), r"hidden_size \(768\).*num_attention_heads \(10\)"),
        (dict(hidden_act="gelu_newest"), "gelu_newest"),
        (dict(position_embedding_type="rotary"), "rotary"),
        (dict(vocab_size=0), "vocab_size"),
    ],
)
def test_invalid_configs_raise_naming_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AlbertConfig(**kwargs)


def test_num_labels_and_label_maps_stay_consistent():
    c = AlbertConfig(id2label={0: "neg", 1: "neu", 2: "pos"})
    assert c.num_labels == 3 and c.label2id == {"neg": 0, "neu": 1, "pos": 2}
    c.num_labels = 5
    assert len(c.id2label) == 5 and c.label2id["LABEL_4"] == 4
    c.id2label = {"0": "a", "1": "b", "2": "c"}  # as transformers derives num_labels from id2label
    assert c.num_labels == 3 and c.id2label == {0: "a", 1: "b", 2: "c"}


def test_our_config_json_reads_in_transformers(tmp_path):
    ours = AlbertConfig(
        hidden_size=64,
        num_attention_heads=4,
        id2label={0: "a", 1: "b", 2: "c"},
        position_embedding_type="relative_key",
        problem_type="single_label_classification",
    )
    ours.save_pretrained(tmp_path)
    theirs = transformers.AlbertConfig.from_pretrained(tmp_path)
    for key, value in ours.to_dict().items():
        if key in ("id2label",):
            assert theirs.id2label == ours.id2label
        elif key != "extra":
            assert getattr(theirs, key) == value, key
    assert theirs.num_labels == 3


def test_their_config_json_reads_here_and_round_trips_unknown_keys(tmp_path):
    theirs = transformers.AlbertConfig(hidden_size=64, num_attention_heads=4, num_labels=4, inner_group_num=2)
    theirs.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    raw |= {"down_scale_factor": 1, "gap_size": 0, "net_structure_type": 0, "num_memory_blocks": 0}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    ours = AlbertConfig.from_pretrained(tmp_path)
    assert (ours.hidden_size, ours.num_labels, ours.inner_group_num) == (64, 4, 2)
    assert ours.extra["gap_size"] == 0
    out = tmp_path / "again"
    ours.save_pretrained(out)
    again = json.loads((out / "config.json").read_text())
    assert again["net_structure_type"] == 0 and again["model_type"] == "albert"


def test_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        AlbertConfig.from_pretrained(tmp_path / "nope")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        AlbertConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="'bert'"):
        AlbertConfig.from_pretrained(tmp_path)


def test_unmodelled_keywords_and_attributes_are_kept_as_transformers_keeps_them(tmp_path):
    kwargs = dict(hidden_size=64, num_attention_heads=4, architectures=["AlbertForMaskedLM"], my_key=1)
    ours, theirs = AlbertConfig(**kwargs), transformers.AlbertConfig(**kwargs)
    assert ours.my_key == theirs.my_key == 1 and ours.architectures == ["AlbertForMaskedLM"]
    for config in (ours, theirs):
        config.later = "set after construction"
        config.update({"from_update": 2.5, "hidden_dropout_prob": 0.2})
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    written = json.loads((tmp_path / "ours" / "config.json").read_text())
    expected = json.loads((tmp_path / "theirs" / "config.json").read_text())
    for key in ("my_key", "architectures", "later", "from_update", "hidden_dropout_prob", "hidden_size"):
        assert written[key] == expected[key], key
    again = AlbertConfig.from_pretrained(tmp_path / "ours")
    assert (again.later, again.from_update, again.hidden_dropout_prob) == ("set after construction", 2.5, 0.2)
    assert ours.to_diff_dict().keys() == theirs.to_diff_dict().keys() - {"transformers_version"}
    labelled = dict(num_labels=3, problem_type="single_label_classification")
    assert AlbertConfig(**labelled).to_diff_dict().keys() == transformers.AlbertConfig(
        **labelled
    ).to_diff_dict().keys() - {"transformers_version"}


def test_update_from_string_reads_each_value_as_its_attributes_type():
    update = "hidden_size=48,hidden_act=relu,output_attentions=true,layer_norm_eps=1e-5,classifier_dropout_prob=0.5"
    ours, theirs = AlbertConfig(), transformers.AlbertConfig()
    ours.update_from_string(update)
    theirs.update_from_string(update)
    for key in (
        "hidden_size",
        "hidden_act",
        "output_attentions",
        "layer_norm_eps",
        "classifier_dropout_prob",
    ):
        assert getattr(ours, key) == getattr(theirs, key) and type(getattr(ours, key)) is type(
            getattr(theirs, key)
        )
    for config in (ours, theirs):
        with pytest.raises(ValueError, match="key nope isn't in the original config dict"):
            config.update_from_string("nope=1")
        with pytest.raises(ValueError, match="invalid literal for int"):
            config.update_from_string("hidden_size=abc")
    with pytest.raises(ValueError, match="can't derive true or false from maybe"):
        ours.update_from_string("output_attentions=maybe")


def test_extra_stays_apart_from_fields_properties_and_other_configs(tmp_path):
    import dataclasses

    config = AlbertConfig(my_key=1)
    copy = dataclasses.replace(config, hidden_dropout_prob=0.3)
    copy.other = 2
    assert "other" not in config.extra and copy.my_key == 1  # a copy's extra is its own
    given = {"a": 1}
    AlbertConfig(extra=given, b=2)
    assert given == {"a": 1}
    with pytest.raises(AttributeError):
        config.head_dim = 10  # a property is no key of config.json
    config._private = 1
    assert "_private" not in config.to_dict()

    @dataclasses.dataclass
    class WithMore(AlbertConfig):
        more: int = 1

    assert WithMore(more=5).more == 5 and "more" not in WithMore(more=5).extra
    # a failed update leaves the config as it was
    with pytest.raises(ValueError, match="divisible"):
        config.update({"hidden_dropout_prob": 0.5, "hidden_size": 30})
    assert (config.hidden_dropout_prob, config.hidden_size) == (0.0, 768)
    with pytest.raises(TypeError, match="only int, float, bool or str values"):
        AlbertConfig(classifier_dropout_prob=None).update_from_string("classifier_dropout_prob=0.2")


def test_from_pretrained_sets_only_what_the_config_has(tmp_path):
    AlbertConfig(hidden_size=64, num_attention_heads=4, my_key=1).save_pretrained(tmp_path)
    transformers.AlbertConfig(hidden_size=64, num_attention_heads=4, my_key=1).save_pretrained(tmp_path / "t")
    kwargs = dict(hidden_size=128, my_key=2, not_a_key=3, return_unused_kwargs=True)
    ours, unused = AlbertConfig.from_pretrained(tmp_path, **kwargs)
    theirs, their_unused = transformers.AlbertConfig.from_pretrained(tmp_path / "t", **kwargs)
    assert unused == their_unused == {"not_a_key": 3}
    assert (ours.hidden_size, ours.my_key) == (theirs.hidden_size, theirs.my_key) == (128, 2)
    assert "not_a_key" not in AlbertConfig.from_pretrained(tmp_path, not_a_key=3).to_dict()


def test_from_pretrained_takes_a_config_path_or_transformers_config(tmp_path):
    kwargs = dict(vocab_size=99, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=37)  # fmt: skip
    theirs = transformers.AlbertConfig(**kwargs)
    openalbert.AlbertModel(AlbertConfig(**kwargs)).save_pretrained(tmp_path)
    for config in (tmp_path / "config.json", str(tmp_path), theirs):
        loaded = openalbert.AlbertForMaskedLM.from_pretrained(tmp_path, config=config)
        assert isinstance(loaded.config, AlbertConfig) and loaded.config.intermediate_size == 37, config
    # A constructor converts it too, as transformers' users build models (before: a TypeError)
    for make in (openalbert.AlbertModel, openalbert.AlbertForMaskedLM, openalbert.AlbertForQuestionAnswering):
        torch.manual_seed(0)
        built = make(theirs)
        torch.manual_seed(0)
        reference = make(AlbertConfig(**kwargs))
        assert isinstance(built.config, AlbertConfig) and built.config.intermediate_size == 37
        assert all(
            torch.equal(a, b) for a, b in zip(built.state_dict().values(), reference.state_dict().values())
        )
    pytest.importorskip("tensorflow")
    pytest.importorskip("flax")
    from openalbert import modeling_flax, modeling_tf

    for model in (modeling_tf.TFAlbertForMaskedLM(theirs), modeling_flax.FlaxAlbertForMaskedLM(theirs)):
        assert isinstance(model.config, AlbertConfig) and model.config.intermediate_size == 37
    with pytest.raises(TypeError, match="config must be an openalbert.AlbertConfig, got builtins.dict"):
        openalbert.AlbertModel(kwargs)


def test_transformers_config_attributes_read_their_defaults_until_set(tmp_path):
    # Before: AttributeError for tie_word_embeddings, is_decoder, name_or_path, dtype, attribute_map...
    from openalbert.config import PRETRAINED_DEFAULTS

    ours, theirs = AlbertConfig(), transformers.AlbertConfig()
    for name in [*PRETRAINED_DEFAULTS, "torch_dtype", "name_or_path", "attribute_map"]:
        assert getattr(ours, name) == getattr(theirs, name), name
    ours.tie_word_embeddings = False
    ours.save_pretrained(tmp_path)
    loaded = AlbertConfig.from_pretrained(tmp_path)
    assert (
        loaded.tie_word_embeddings is False
        and transformers.AlbertConfig.from_pretrained(tmp_path).tie_word_embeddings is False
    )
    # a model's config records where it was loaded from; a config's own from_pretrained does not
    openalbert.AlbertModel(AlbertConfig(**TINY)).save_pretrained(tmp_path / "m")
    model_config = openalbert.AlbertModel.from_pretrained(tmp_path / "m").config
    theirs_path = transformers.AlbertModel.from_pretrained(tmp_path / "m").config.name_or_path
    assert model_config.name_or_path == theirs_path == str(tmp_path / "m")
    assert loaded.name_or_path == transformers.AlbertConfig.from_pretrained(tmp_path).name_or_path == ""


def test_from_dict_and_to_json_as_transformers(tmp_path):
    data = AlbertConfig(num_labels=3).to_dict()
    config, unused = AlbertConfig.from_dict(data, return_unused_kwargs=True, hidden_dropout_prob=0.3, foo=1)
    expected = transformers.AlbertConfig.from_dict(
        data, return_unused_kwargs=True, hidden_dropout_prob=0.3, foo=1
    )
    assert unused == expected[1] == {"foo": 1}
    assert (
        config.hidden_dropout_prob == 0.3
        and "foo" not in config.extra
        and "return_unused_kwargs" not in config.extra
    )
    assert isinstance(AlbertConfig.from_dict(data, foo=1), AlbertConfig)
    # use_diff=False writes the task settings left at their defaults too; to_json_file writes either
    plain = AlbertConfig()
    assert "id2label" not in json.loads(plain.to_json_string())
    assert json.loads(plain.to_json_string(use_diff=False))["id2label"] == {"0": "LABEL_0", "1": "LABEL_1"}
    plain.to_json_file(tmp_path / "c.json", use_diff=False)
    assert json.loads((tmp_path / "c.json").read_text()) == json.loads(plain.to_json_string(use_diff=False))
    assert transformers.AlbertConfig.from_json_file(tmp_path / "c.json").hidden_size == 768


def test_a_config_json_without_the_sizes_reads_transformers_defaults(tmp_path):
    # A hand-written config.json without num_attention_heads built 12 heads here and 64 in transformers:
    # the same weights loaded into two different models.
    data = {"model_type": "albert", "vocab_size": 100, "embedding_size": 16, "num_hidden_layers": 1}
    (tmp_path / "config.json").write_text(json.dumps(data))
    ours, theirs = AlbertConfig.from_pretrained(tmp_path), transformers.AlbertConfig.from_pretrained(tmp_path)
    for name in ("hidden_size", "num_attention_heads", "intermediate_size", "embedding_size", "vocab_size"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert AlbertConfig().hidden_size == 768  # (the class's own defaults stay albert-base-v2's)
