"""The experiments' statistics and machinery: Kendall tau, mean +- std, Yang et al.'s relative
improvement, stage parts, the unit cache, random genotypes in an OPs window, sized baselines."""
import dataclasses
import json
import math

import numpy as np
import pytest

from experiments import protocol
from experiments.ops_matching import genotype_cost_model, sample_in_window, size_baseline
from experiments.report import (kendall_tau, mean_std, permutation_p, pooled_seed_std,
                                relative_improvement)
from ubnas_tf import config as config_lib
from ubnas_tf.data import load_dataset
from ubnas_tf.errors import UserError
from ubnas_tf.network.baselines import build_baseline
from ubnas_tf.network.cost import profile
from ubnas_tf.network.genotype_network import build_from_config


def test_kendall_tau_against_hand_counts():
    # One discordant pair of six: (6 - 2 * 1) / 6.
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    # tau-b with a tie in x: 2 concordant, 1 tied in x only: 2 / sqrt(3 * 2).
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert math.isnan(kendall_tau([1, 1], [1, 2]))


def test_mean_std_and_relative_improvement():
    mean, std = mean_std([0.8, 0.9, None])
    assert mean == pytest.approx(0.85) and std == pytest.approx(math.sqrt(0.005))
    assert mean_std([0.7]) == (0.7, 0.0) and mean_std([]) is None
    # Yang et al. 2020: RI = 100 (acc_m - acc_r) / acc_r.
    points, percent = relative_improvement(0.9, 0.8)
    assert points == pytest.approx(10.0) and percent == pytest.approx(12.5)


def test_pooled_seed_std_against_hand_computed_anova_within_group():
    # a: mean 0.81, squares 2 x 0.01^2; b: mean 0.91, squares 0.01^2 + 0.01^2 + 0.02^2;
    # c has one run (no degree of freedom), d's None is a diverged run left out.
    std, freedom = pooled_seed_std({"a": [0.80, 0.82], "b": [0.90, 0.90, 0.93], "c": [0.5],
                                    "d": [0.7, None]})
    assert freedom == 3 and std == pytest.approx(math.sqrt(0.0008 / 3))
    assert pooled_seed_std({"c": [0.5]}) is None


def test_permutation_p_against_hand_counted_splits():
    # Pooled {1, 2, 3, 4} split 2 + 2: six splits, |gaps| 2, 1, 0, 0, 1, 2; observed 2 -> 2 / 6.
    assert permutation_p([3, 4], [1, 2]) == pytest.approx(1 / 3)
    # 1 against 3: the observed split {10} is the only one as extreme of four -> 1 / 4.
    assert permutation_p([10], [1, 2, 3]) == pytest.approx(1 / 4)
    assert permutation_p([1, 2], [2, 1]) == 1.0  # no difference: every split is as extreme
    with pytest.raises(ValueError):
        permutation_p([], [1])


def _experiment(tmp_path, **budget):
    return protocol.Experiment(dataclasses.replace(protocol.SMOKE, **budget), tmp_path / "r",
                               tmp_path / "w")


def _unit(key, epochs=1, spec=None):
    return protocol.Unit(key, "train:genotype", epochs, lambda: spec or {"a": 1},
                         lambda spec: {"top1": 0.5})


def test_parts_stay_under_the_limit_and_cached_units_cost_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(protocol, "STAGE_LIMIT_S", 100)
    experiment = _experiment(tmp_path, overhead_s=10.0, seconds_per_epoch={"genotype": 20.0})
    units = [_unit(f"u{i}", epochs=2) for i in range(5)]  # 50 s each
    assert [[u.key for u in part] for part in experiment.parts(units)] == [
        ["u0", "u1"], ["u2", "u3"], ["u4"]]
    experiment.run_units("t", units[:1])
    # u0 is now cached (0 s) and measured: the estimate follows the measured time.
    measured = json.loads((tmp_path / "r" / "units" / "u0.json").read_text())
    assert measured["result"] == {"top1": 0.5} and measured["budget"] == "smoke"
    assert experiment.estimate(units[1]) == pytest.approx(measured["wall_seconds"])


def test_a_unit_on_more_images_is_estimated_and_measured_per_reference_epoch(tmp_path):
    experiment = _experiment(tmp_path, overhead_s=10.0, seconds_per_epoch={"search": 20.0})
    # The smoke search's 64 images (max_examples=64) x 3: an epoch costs 3 of the budget's.
    larger = experiment.search_unit("big", 0, sets=("max_examples=192",))
    assert larger.scale == 3.0 and experiment.search_unit("ref", 0).scale == 1.0
    assert experiment.estimate(larger) == pytest.approx(10.0 + 20.0 * larger.epochs * 3)
    # Measured: 2 epochs at scale 3 took 600 s -> 100 s per reference epoch, which a unit of
    # the reference size is then estimated at.
    unit = protocol.Unit("m", "search", 2, lambda: {"k": 1}, lambda spec: {}, scale=3.0)
    experiment.run_units("t", [unit])
    path = tmp_path / "r" / "units" / "m.json"
    record = json.loads(path.read_text())
    assert record["scale"] == 3.0
    path.write_text(json.dumps({**record, "wall_seconds": 600.0}))
    assert experiment.seconds_per_epoch("search")[1] == pytest.approx(100.0)
    assert experiment.estimate(experiment.search_unit("ref", 0)) == pytest.approx(
        100.0 * experiment.search_unit("ref", 0).epochs)


def test_shards_split_a_stage_between_processes_whatever_is_cached(tmp_path):
    experiment = _experiment(tmp_path)
    ran = []

    def unit(key):
        return protocol.Unit(key, "train:genotype", 1, lambda: {"k": key},
                             lambda spec: ran.append(spec["k"]) or {"top1": 0.5})

    stages = {"s": lambda: [unit(f"u{i}") for i in range(5)]}
    protocol.run_stage(experiment, stages, "s@2/2", report=None)
    assert ran == ["u1", "u3"]
    # The first shard is the same units with u1, u3 already cached: no unit runs twice.
    protocol.run_stage(experiment, stages, "s@1/2", report=None)
    assert ran == ["u1", "u3", "u0", "u2", "u4"]
    for bad in ("s@3/2", "s@0/2", "s@x"):
        with pytest.raises(UserError, match="NAME@K/N"):
            protocol.run_stage(experiment, stages, bad, report=None)


@pytest.mark.slow
def test_a_diverged_retraining_is_recorded_and_the_stage_goes_on(tmp_path):
    from ubnas_tf.search_space.genotype import published

    experiment = _experiment(tmp_path)
    genotype = published("UBNAS_FASHION_MNIST").to_dict()
    # An infinite learning rate makes the first update non-finite (tools/train.py: exit 1).
    diverging = experiment.train_unit("nan_seed-0", "genotype", 0, genotype=genotype,
                                      sets=("optimizer.lr=.inf", "optimizer.schedule=constant"))
    after = _unit("after")
    experiment.run_units("t", [diverging, after])
    result = experiment.result("nan_seed-0")
    assert result["test_top1"] is None and result["diverged"]["epoch"] == 1
    assert "training loss became" in result["diverged"]["error"]
    assert experiment.result("after") == {"top1": 0.5}


def test_cached_unit_is_reused_and_a_changed_spec_is_an_error(tmp_path):
    experiment = _experiment(tmp_path)
    calls = []
    unit = protocol.Unit("u", "train:genotype", 1, lambda: {"a": 1},
                         lambda spec: calls.append(spec) or {"top1": 0.5})
    experiment.run_units("t", [unit])
    experiment.run_units("t", [unit])
    assert calls == [{"a": 1}]
    with pytest.raises(UserError, match="other settings"):
        experiment.run_units("t", [_unit("u", spec={"a": 2})])
    with pytest.raises(UserError, match="budget 'smoke'"):
        protocol.Experiment(protocol.FULL, tmp_path / "r", tmp_path / "w").cached("u")


def test_a_run_of_another_experiment_with_the_same_spec_is_copied_not_rerun(tmp_path):
    other = _experiment(tmp_path / "compare")
    other.run_units("t", [_unit("search-0", spec={"tool": "search", "sets": ["seed=0"]})])
    calls = []
    experiment = protocol.Experiment(protocol.SMOKE, tmp_path / "r", tmp_path / "w",
                                     reuse=[tmp_path / "compare" / "r"])

    def unit(key, spec):
        return protocol.Unit(key, "search", 1, lambda: spec,
                             lambda spec: calls.append(spec) or {"top1": 0.7})

    same = unit("default_search-0", {"tool": "search", "sets": ["seed=0"]})
    other_seed = unit("default_search-1", {"tool": "search", "sets": ["seed=1"]})
    assert experiment.estimate(same) == 0.0 and experiment.estimate(other_seed) > 0
    experiment.run_units("t", [same, other_seed])
    assert calls == [{"tool": "search", "sets": ["seed=1"]}]  # only the new run ran
    copied = experiment.cached("default_search-0")
    assert copied["result"] == {"top1": 0.5} and copied["key"] == "default_search-0"
    assert copied["reused_from"].endswith("units/search-0.json")
    # Another budget's unit is never taken for this one's.
    full = protocol.Experiment(protocol.FULL, tmp_path / "f", tmp_path / "w",
                               reuse=[tmp_path / "compare" / "r"])
    assert full.reusable({"tool": "search", "sets": ["seed=0"]}) is None


@pytest.mark.parametrize("reduction", ["searched", "quicknet"])
def test_random_genotypes_in_the_window_cost_what_the_built_network_costs(reduction):
    info = load_dataset("demo").info
    search = config_lib.load("search", ["configs/search_demo.yaml"])
    train = config_lib.load("train", ["configs/train_demo.yaml"], [f"reduction={reduction}"])
    model = genotype_cost_model(search, train, info)
    low, high = model.range()
    target = (low * high) ** 0.5
    kept, tries = sample_in_window(model, count=3, target=target, tolerance=0.1, seed=0,
                                   nodes=4, multiplier=4)
    assert len(kept) == 3 and tries >= 3
    genotype, ops = kept[0]
    assert abs(ops / target - 1) <= 0.1
    assert profile(build_from_config(genotype, info, train)).ops == pytest.approx(ops, rel=1e-9)
    again, _ = sample_in_window(model, count=3, target=target, tolerance=0.1, seed=0, nodes=4,
                                multiplier=4)
    assert [g for g, _ in again] == [g for g, _ in kept]
    with pytest.raises(UserError, match="widen"):
        sample_in_window(model, count=1, target=low / 2, tolerance=0.01, seed=0, nodes=4,
                         multiplier=4, max_tries=50)


@pytest.mark.parametrize("name", ["bireal", "quicknet"])
def test_sized_baseline_is_within_the_window(name):
    info = load_dataset("demo").info
    sized = size_baseline(name, info, target=500_000, tolerance=0.1)
    model = build_baseline(name, info, {"baselines": {name: sized["settings"]}})
    assert profile(model).ops == pytest.approx(sized["ops"])
    assert abs(sized["ops"] / 500_000 - 1) <= 0.1
