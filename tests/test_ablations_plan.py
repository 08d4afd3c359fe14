"""experiments/ablations.py builds the runs it says it does: every override is accepted by the
tools' config schema, the STE rows use the STE in search and retraining, the module mappings
build the module they name, K rows differ from the reference, early_stop rows run to the end."""
import yaml

from ubnas_tf.io_utils import atomic_write_json
from ubnas_tf.search_space.genotype import published

from experiments import ablations, protocol
from ubnas_tf import config as config_lib
from ubnas_tf.search_space import ModuleStructure


def _ablations(tmp_path, budget="full"):
    return ablations.make(budget, tmp_path / "r", tmp_path / "w")


def _sets(unit):
    return unit.spec()["sets"]


def test_every_unit_is_a_valid_search_or_train_config(tmp_path):
    runs = _ablations(tmp_path)
    budget = runs.exp.budget
    # The searches' results the retrainings need, as a finished run would have cached them.
    genotype = published("PC_DARTS").to_dict()
    k_labels = [f"k-{normal}-{reduce}" for normal, reduce in runs.k_settings()[1:]]
    for label in ("default", "sign-ste", *k_labels, "nostop"):
        for seed in runs.seeds:
            atomic_write_json(runs.exp.units_dir / f"{label}_search-{seed}.json", {
                "key": f"{label}_search-{seed}", "kind": "search", "budget": "full",
                "epochs": 10, "spec": {}, "result": {"genotype": genotype}})
    keys = []
    for name, make_units in runs.stages().items():
        units = make_units()
        assert units, name
        for unit in units:
            keys.append(unit.key)
            tool = "search" if unit.kind == "search" else "train"
            config = budget.search_config if tool == "search" else budget.train_config
            config_lib.load(tool, [protocol.ROOT / config], _sets(unit))
            if tool == "train":
                assert unit.spec()["genotype"] == genotype
    # default, sign, two K settings, early stop: (search + retraining) x 2 seeds each; seven
    # module rows (the reference's included): retraining x 2 seeds.
    assert len(keys) == len(set(keys)) == 5 * 2 * 2 + 7 * 2
    # The module reference row retrains the reference genotype as the `default` row's seed 0
    # does: the same spec, so a finished default run stands in for it (Experiment.reuse).
    module = {unit.key: unit for unit in runs.stages()["module"]()}
    default = {unit.key: unit for unit in runs.stages()["default"]()}
    assert module["module-ebnas_retrain_seed-0"].spec() == default["default_seed-0"].spec()


def test_sign_rows_use_the_ste_in_search_and_retraining(tmp_path):
    runs = _ablations(tmp_path)
    search, train = runs.stages()["sign"]()[:2]
    assert "module=ebnas_search_ste" in _sets(search)
    structure = ModuleStructure.from_config(
        config_lib.load("search", [protocol.ROOT / "configs/search_fashion_mnist.yaml"],
                        _sets(search))["module"])
    assert structure.sign == "ste" and not structure.pre_bn  # the search module, with the STE
    assert train.key == "sign-ste_seed-0" and train.kind == "train:genotype"


def test_module_mappings_build_the_structure_they_name():
    expected = {"no_pre_bn": {"pre_bn": False}, "relu": {"activation": "relu"},
                "no_activation": {"activation": "none"}, "no_shortcut": {"shortcut": False},
                "unscaled_sign": {"weights": "sign"}}
    reference = ModuleStructure.from_config("ebnas_retrain")
    for label, changes in expected.items():
        config = config_lib.load("train", [], [f"module={ablations.MODULES[label]}"])
        structure = ModuleStructure.from_config(config["module"])
        assert structure.to_config() == {**reference.to_config(), **changes}, label
    assert ModuleStructure.from_config(yaml.safe_load(ablations.MODULES["bireal"])).weights == \
        "scaled_sign"


def test_k_rows_differ_from_the_reference_and_early_stop_rows_run_to_the_end(tmp_path):
    for budget in ("full", "smoke"):
        settings = _ablations(tmp_path / budget, budget).k_settings()
        assert len(settings) == len(set(settings)) == 3
    full = config_lib.load("search", [protocol.ROOT / "configs/search_fashion_mnist.yaml"],
                           ablations.early_stop_off())
    early_stop = full["early_stop"]
    assert early_stop.get("enabled") is False or (
        early_stop["patience"] is None and early_stop["max_skip"] is None)


def test_early_stop_pairs_match_each_seeds_two_searches(tmp_path):
    runs = _ablations(tmp_path)
    genotype, other = published("PC_DARTS").to_dict(), published("DARTS_V2").to_dict()

    def cache(key, result):
        atomic_write_json(runs.exp.units_dir / f"{key}.json", {
            "key": key, "kind": "search" if "search" in key else "train:genotype",
            "budget": "full", "epochs": 10, "spec": {}, "result": result})

    def search(epochs, seconds, rule, found):
        return {"genotype": found, "epochs_run": epochs, "search_seconds": seconds,
                "stop_rule": rule}

    cache("default_search-0", search(7, 450.0, "collapse", genotype))
    cache("nostop_search-0", search(10, 600.0, None, other))
    cache("default_seed-0", {"test_top1": 0.84})
    cache("default_search-1", search(9, 540.0, "ranking", genotype))  # seed 1: no full run yet
    pairs = runs.early_stop_pairs()
    assert pairs == [{"seed": 0, "rule": "collapse", "epochs": [7, 10], "seconds": [450.0, 600.0],
                      "same_genotype": False, "test_top1": [0.84, None]}]
    row = runs._pairs_markdown(pairs)[4]
    assert row == "| 0 | collapse | 7 / 10 | 3 (30%) | 450 / 600 | no | 84.00 / - |"
