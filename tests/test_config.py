"""Configs: defaults as schema, files and key=value overrides, errors for unknown keys."""
import pytest

from ubnas_tf import config
from ubnas_tf.errors import UserError


def test_overrides_and_files_layer_in_order(tmp_path):
    file_a = tmp_path / "a.yaml"
    file_a.write_text("epochs: 3\ndata:\n  portion: 0.25\n")
    file_b = tmp_path / "b.yaml"
    file_b.write_text("epochs: 4\n")
    resolved = config.load("search", [file_a, file_b], ["batch_size=8", "data.portion=0.75"])
    assert resolved["epochs"] == 4 and resolved["batch_size"] == 8
    assert resolved["data"]["portion"] == 0.75
    assert resolved["cells"] == config.defaults("search")["cells"]


def test_types_are_checked_and_ints_widen_to_floats():
    assert config.merge({"lr": 0.1}, {"lr": 1})["lr"] == 1.0
    with pytest.raises(UserError, match="config key 'epochs' needs an int like 50, got 'many'"):
        config.load("search", overrides=["epochs=many"])
    with pytest.raises(UserError, match="needs a bool"):
        config.merge({"flag": True}, {"flag": 1})


def test_unknown_keys_are_errors_with_suggestions():
    with pytest.raises(UserError, match=r"unknown config key 'epoch' \(did you mean epochs\?\)"):
        config.load("search", overrides=["epoch=3"])
    with pytest.raises(UserError, match="unknown config key 'data.portio'"):
        config.load("search", overrides=["data.portio=0.3"])


def test_free_mappings_accept_any_key():
    resolved = config.load("search", overrides=["data.augment.cutout=16"])
    assert resolved["data"]["augment"] == {"cutout": 16}


def test_a_free_mapping_takes_keys_from_every_layer(tmp_path):
    path = tmp_path / "augment.yaml"
    path.write_text("data:\n  augment:\n    cutout: 16\n")
    resolved = config.load("search", [path], ["data.augment.flip=true",
                                                "data.augment.cutout=8"])
    assert resolved["data"]["augment"] == {"cutout": 8, "flip": True}
    with pytest.raises(UserError, match="unknown config key 'data.agument'"):
        config.load("search", overrides=["data.augment.flip=true", "data.agument.x=1"])


def test_a_run_saved_before_a_key_existed_is_the_same_run():
    for tool, new_key in (("search", "ops_budget"), ("train", "distill")):
        saved = config.load(tool)
        del saved[new_key]  # as written by a version without that section
        assert config.same_run(saved, config.load(tool)) == [new_key]
        assert config.same_run(config.with_defaults(tool, saved), config.load(tool)) == []
        changed = config.load(tool, overrides=["seed=7"])
        assert config.same_run(config.with_defaults(tool, saved), changed) == ["seed"]


def test_bad_files_and_override_syntax(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        config.load("search", [tmp_path / "nope.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(UserError, match="is not valid YAML"):
        config.load("search", [bad])
    with pytest.raises(UserError, match="must look like key=value"):
        config.parse_override("epochs")


def test_same_run_lists_differences_and_markdown():
    a = config.load("search")
    b = config.load("search", overrides=["epochs=1", "cells=5"])
    assert config.same_run(a, b) == ["cells"]
    table = config.to_markdown(b)
    assert "| cells | 5 |" in table and "| data.portion | 0.5 |" in table
