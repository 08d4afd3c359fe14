"""Warm-up and the regularizer ramp as shares of the run (search/schedule.py)."""
import pytest

from ubnas_tf import config as config_lib
from ubnas_tf.errors import UserError
from ubnas_tf.search.config import check_config, comparable
from ubnas_tf.search.schedule import ramp_end, ramp_value, warmup_epochs


def _config(*overrides):
    return config_lib.load("search", overrides=list(overrides))


def test_defaults_are_ebnas_schedule():
    """EBNAS (train_search.py): 25 weight-only epochs of 50, r(e) = e / 49."""
    config = _config()
    assert warmup_epochs(config) == 25
    assert ramp_end(config) == 49
    assert [ramp_value(e, ramp_end(config)) for e in (0, 25, 49)] == [0.0, 25 / 49, 1.0]


@pytest.mark.parametrize("epochs, warmup, expected", [
    (10, 0.5, 5), (8, 0.5, 4), (9, 0.5, 4), (1, 0.5, 0), (100, 0.29, 29), (3, 0.0, 0)])
def test_a_short_search_is_a_scaled_ebnas_search(epochs, warmup, expected):
    # 0.29 * 100 is 28.999999999999996 in floats: the share means 29 epochs.
    config = _config(f"epochs={epochs}", f"warmup={warmup}")
    assert warmup_epochs(config) == expected
    # The ramp reaches 1 at the last epoch (index epochs - 1), whatever the length.
    end = ramp_end(config)
    assert ramp_value(epochs - 1, end) == 1.0
    if epochs > 2:
        assert ramp_value(epochs - 2, end) == pytest.approx((epochs - 2) / (epochs - 1))


def test_the_epoch_form_still_wins_when_set():
    config = _config("epochs=10", "warmup_epochs=3", "regularizers.ramp_epochs=4")
    assert warmup_epochs(config) == 3 and ramp_end(config) == 4
    assert ramp_value(2, 4) == 0.5 and ramp_value(9, 4) == 1.0
    assert ramp_value(3, 0) == 1.0  # R = 0: no ramp


def test_an_unsearched_architecture_is_refused_up_front():
    with pytest.raises(UserError) as error:
        check_config(_config("epochs=1", "warmup_epochs=25"))
    message = str(error.value)
    assert "never be searched" in message and "warmup_epochs=null" in message
    with pytest.raises(UserError, match="warmup"):
        check_config(_config("warmup=1.0"))
    check_config(_config("epochs=1"))  # the default share leaves the one epoch searched


def test_an_old_run_compares_equal_to_the_same_schedule_as_shares():
    """A run saved before the shares existed (warmup_epochs: 25, ramp_epochs: 49 of 50
    epochs) is the run the new defaults describe, so it resumes; another one is not."""
    old = config_lib.load("search")
    old["warmup_epochs"], old["regularizers"]["ramp_epochs"] = 25, 49
    assert config_lib.same_run(comparable(old), comparable(_config())) == []
    old["warmup_epochs"] = 20
    assert config_lib.same_run(comparable(old), comparable(_config())) == ["warmup"]
    # K null and the K it resolves to are the same search.
    assert config_lib.same_run(comparable(_config("partial_channels.normal=4")),
                               comparable(_config())) == []


def test_a_run_saved_before_the_shares_resumes_with_its_own_behaviour():
    """A config.yaml written before warm-up shares, edge selection and the new stop rules
    existed: it resumes with the keys that say what it did (PC-DARTS's derivation, no new
    rule), and today's defaults are named as the difference."""
    from ubnas_tf.search.config import RESUMABLE_KEYS, saved_config

    old = config_lib.load("search")
    for key in ("warmup", "edge_selection"):
        del old[key]
    del old["regularizers"]["ramp"]
    old["warmup_epochs"], old["regularizers"]["ramp_epochs"] = 25, 49
    old["partial_channels"] = {"normal": 8, "reduce": 4}
    old["early_stop"] = {"patience": 5, "max_skip": None}
    same = _config("partial_channels.normal=8", "partial_channels.min_per_op=1",
                   "edge_selection=pcdarts", "early_stop.ranking_patience=null",
                   "early_stop.max_parameter_free.normal=null",
                   "early_stop.max_parameter_free.reduce=null", "early_stop.hessian.growth=null")
    assert config_lib.same_run(comparable(saved_config(old)), comparable(same),
                               ignore=RESUMABLE_KEYS) == []
    # Early stopping may change on resume (its rules read only the log), so it is no
    # difference; the saved config still says which rules the old run had: none of the new.
    assert comparable(saved_config(old))["early_stop"] == comparable(same)["early_stop"]
    assert config_lib.same_run(comparable(saved_config(old)), comparable(_config()),
                               ignore=RESUMABLE_KEYS) == ["edge_selection",
                                                          "partial_channels.normal"]
