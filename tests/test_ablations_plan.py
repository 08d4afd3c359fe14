"""experiments/ablations.py builds the runs it says it does: every override is accepted by the
tools' config schema, the STE rows use the STE in search and retraining, the module mappings
build the module they name, K rows differ from the reference, early_stop rows run to the end,
the supernet row trains on 3x the reference's images."""
import dataclasses
import json
import shutil

import pytest
import yaml

from ubnas_tf.io_utils import atomic_write_json
from ubnas_tf.search_space.genotype import published

from experiments import ablations, protocol
from ubnas_tf import config as config_lib
from ubnas_tf.search_space import PRESETS, ModuleStructure, get_space


def _ablations(tmp_path, budget="full", reuse=()):
    return ablations.make(budget, tmp_path / "r", tmp_path / "w", reuse=reuse)


def _cache(folder, key, result, budget="full", spec=None):
    atomic_write_json(folder / "units" / f"{key}.json", {
        "key": key, "kind": "search", "budget": budget, "epochs": 10, "spec": spec or {},
        "result": result})


def _supernet_row(tmp_path, records=None):
    """Ablations whose supernet row has finished: search K found EBNAS's genotype (K = 0) or
    UBNAS's Fashion-MNIST one (K = 1), DARTS-PT the other. `records`: a folder whose drawn
    records (the `row_records` fixture's) are copied in, so that the stage is not drawn again."""
    runs = _ablations(tmp_path)
    found = [published("EBNAS").to_dict(), published("UBNAS_FASHION_MNIST").to_dict()]
    for seed in runs.seeds:
        _cache(tmp_path / "r", f"images-18000_search-{seed}", {"genotype": found[seed]})
        _cache(tmp_path / "r", f"images-18000_pt-{seed}", {"genotype": found[1 - seed]})
    for record in (records.glob("*.json") if records else ()):
        shutil.copy(record, tmp_path / "r" / record.name)
    return runs, found


@pytest.fixture(scope="module")
def row_records(tmp_path_factory):
    """The records the supernet row's stages draw once (random genotypes of the row and of
    each template, QuickNet's size, QuickNets of random blocks, random dilation patterns,
    random blocks of the narrow template: 5-10 s each, building and costing networks), drawn
    once for the module: each stage's test checks its draw here (supernet_random's test draws
    its own, to check that the record is drawn once and grown)."""
    folder = tmp_path_factory.mktemp("row")
    runs, _ = _supernet_row(folder)
    runs.supernet_random_genotypes()
    for name in ablations.TEMPLATES:
        runs.template_random_genotypes(name)
    runs.supernet_baseline_sizes()
    runs.quicknet_ops_record()
    runs.dilation_record()
    runs.narrow_record()
    return folder / "r"


def _sets(unit):
    return unit.spec()["sets"]


def test_every_unit_is_a_valid_search_or_train_config(tmp_path, row_records):
    runs = _ablations(tmp_path, reuse=[tmp_path / "compare"])
    (tmp_path / "r").mkdir()
    for record in row_records.glob("*.json"):  # the draws are the stage tests' to check
        shutil.copy(record, tmp_path / "r" / record.name)
    budget = runs.exp.budget
    # The searches' results the retrainings need, as a finished run would have cached them.
    genotype = published("EBNAS").to_dict()  # of the binary space (the random row costs it)
    k_labels = [f"k-{normal}-{reduce}" for normal, reduce in runs.k_settings()[1:]]
    for label in ("default", "sign-ste", *k_labels, "nostop", "images-18000",
                  "images-18000-nostop", "images-18000-quicknet_search",
                  "images-18000-retrain_module"):
        for seed in runs.seeds:
            _cache(tmp_path / "r", f"{label}_search-{seed}", {"genotype": genotype})
    for seed in runs.seeds:  # the selections: the supernet row's, compare.py's
        _cache(tmp_path / "r", f"images-18000_pt-{seed}", {"genotype": genotype})
        _cache(tmp_path / "compare", f"derive_pt-{seed}", {"genotype": genotype})
        for name in ablations.BLOCK_SEARCHES:  # the row's template: 2 blocks a section
            blocks = sum(ablations.BLOCK_TEMPLATES.get(name, {}).get("blocks", [2, 2, 2]))
            _cache(tmp_path / "r", f"images-18000-{name}_search-{seed}",
                   {"blocks": {"ops": ["bin_conv_3x3"] * blocks}})
        _cache(tmp_path / "r", f"images-18000-rsws_rank-{seed}",
               {"ranking": [{"block_ops": ["bin_conv_3x3"] * 6}]})
        _cache(tmp_path / "r", f"images-18000-uniform_rank-{seed}",
               {"ranking": [{"block_ops": ["bin_conv_3x3"] * 6}] * ablations.UNIFORM_TOPK})
        for j in range(ablations.UNIFORM_TOPK):
            _cache(tmp_path / "r", f"images-18000-uniform_topk-{seed}-{j}_seed-"
                   f"{ablations.SELECTION_SEED}", {"val_top1": 0.8})
    keys = []
    for name, make_units in runs.stages().items():
        units = make_units()
        assert units, name
        for unit in units:
            keys.append(unit.key)
            if unit.kind == "derive":
                assert unit.spec()["flags"] == list(budget.selection_flags)
                continue
            if unit.kind == "rank_blocks":  # a block search's supernet ranks networks
                spec = unit.spec()
                assert spec["search"].startswith("images-18000-block_search")
                if ablations.NARROW_SEARCH in unit.key:  # every network retrained in its
                    # template: QuickNet's block, the random ones, each search's (all 3x3 here)
                    assert spec["networks"] == [
                        ["bin_conv_3x3"] * 15,
                        *(n["block_ops"] for n in runs.narrow_record()["networks"]),
                        *[["bin_conv_3x3"] * 15] * 2]
                else:
                    assert "candidates" in spec or all(len(n) == 6 for n in spec["networks"])
                continue
            if unit.kind == "search_blocks":
                loaded = config_lib.load("search_blocks", [], _sets(unit))
                name = unit.key[len("images-18000-"):].rsplit("_search-", 1)[0]
                assert loaded["template"] == runs.search_settings(name)
                continue
            tool = "search" if unit.kind == "search" else "train"
            config = budget.search_config if tool == "search" else budget.train_config
            loaded = config_lib.load(tool, [protocol.ROOT / config], _sets(unit))
            if any(part in unit.key for part in ("-block_search", "-rsws-", "-uniform_topk-")):
                # its search's (or ranking's) blocks
                narrow = "block_search_uniform_narrow" in unit.key
                assert loaded["baselines"]["quicknet"]["ops"] == \
                    ["bin_conv_3x3"] * (15 if narrow else 6)
            elif any(f"-{name}-random-" in unit.key for name in ("quicknet_ops", "dilation",
                                                                  "narrow")):
                # QuickNet of the record's blocks (random blocks, random dilation patterns,
                # random blocks of the narrow template)
                index = int(unit.key.split("-random-")[1].split("_")[0])
                record = (runs.dilation_record() if "-dilation-" in unit.key
                          else runs.narrow_record() if "-narrow-" in unit.key
                          else runs.quicknet_ops_record())
                assert unit.spec()["model"] == "quicknet"
                assert loaded["baselines"]["quicknet"]["ops"] == \
                    record["networks"][index]["block_ops"]
            elif "-random-" in unit.key:  # each random network of its record
                family, rest = unit.key.split("-random-")
                template = family.removeprefix("images-18000-")
                record = (runs.template_random_genotypes(template)
                          if template in ablations.TEMPLATES else runs.supernet_random_genotypes())
                index = int(rest.split("_")[0])
                assert unit.spec()["genotype"] == record["genotypes"][index]["genotype"]
            elif tool == "train" and unit.spec()["model"]:  # the supernet row's QuickNet
                assert unit.spec()["model"] in ablations.SUPERNET_BASELINES
            elif tool == "train":
                assert unit.spec()["genotype"] == genotype
    # default, sign, two K settings, early stop, supernet, supernet_nostop: (search +
    # retraining) x 2 seeds each; seven module rows (the reference's included): retraining x 2
    # seeds; supernet_pt: (selection + retraining) x 2 seeds and the reference's 2
    # retrainings; supernet_random: 8 random networks x 2 seeds; supernet_baselines: QuickNet
    # x 2 seeds; transitions: the row's 2 genotypes and the first 4 random networks x 2 seeds;
    # supernet_long: the row's 2 genotypes, QuickNet x 2 seeds and LONG_RANDOM random networks;
    # templates: each template's random networks x 2 seeds; projection and quicknet_block: as
    # transitions; retrain_module, quicknet_search: (search + retraining) x 2 seeds;
    # quicknet_ops: QUICKNET_OPS_RANDOM QuickNets of random blocks x 2 seeds; block_search:
    # (block search + retraining) x 2 seeds, and each search's network x 2 seeds, for each of
    # BLOCK_SEARCHES; block_search_long: 2 searched networks and LONG_RANDOM random blocks;
    # dilation_random: DILATION_RANDOM QuickNets of random dilation patterns x 2 seeds;
    # dilation_long: as block_search_long; oneshot_ranking: a ranking per search of each of
    # ONESHOT_SEARCHES; rsws: a ranking per search, each best x 2 seeds; uniform_long: its
    # 2 networks and LONG_RANDOM random blocks x UNIFORM_LONG_SEEDS; uniform_topk: a ranking
    # per search, UNIFORM_TOPK selection runs per search, each pick x 2 seeds; narrow:
    # QuickNet's block in NARROW_TEMPLATE and NARROW_RANDOM random blocks in it x 2 seeds;
    # narrow_long: its 2 searched networks, LONG_RANDOM random ones and QuickNet's block x
    # NARROW_LONG_SEEDS; narrow_oneshot: a ranking per narrow search.
    templates = len(ablations.TEMPLATES) * ablations.TEMPLATE_RANDOM * 2
    families = sum(2 + family.random * 2 for name, family in ablations.FAMILIES.items()
                   if name != "transitions")
    # Every key once, but uniform_long's seed-0 random networks, block_search_long's units.
    assert len(keys) - len(set(keys)) == ablations.LONG_RANDOM
    assert len(set(keys)) == (7 * 2 * 2 + 7 * 2 + 3 * 2 + 8 * 2 + 2 + 2 + 4 * 2
                              + 2 + 2 + ablations.LONG_RANDOM + templates
                              + families + 2 * 2 * 2
                              + ablations.QUICKNET_OPS_RANDOM * 2
                              + len(ablations.BLOCK_SEARCHES) * 2 * 2 * 2
                              + 2 + ablations.LONG_RANDOM
                              + ablations.DILATION_RANDOM * 2
                              + 2 + ablations.LONG_RANDOM
                              + len(ablations.ONESHOT_SEARCHES) * 2 + 2 + 2 * 2
                              + (2 + ablations.LONG_RANDOM) * ablations.UNIFORM_LONG_SEEDS
                              - ablations.LONG_RANDOM
                              + 2 + 2 * ablations.UNIFORM_TOPK + 2 * 2
                              + (1 + ablations.NARROW_RANDOM) * 2
                              + (2 + ablations.LONG_RANDOM + 1) * ablations.NARROW_LONG_SEEDS
                              + 2)
    # The module reference row retrains the reference genotype as the `default` row's seed 0
    # does: the same spec, so a finished default run stands in for it (Experiment.reuse).
    module = {unit.key: unit for unit in runs.stages()["module"]()}
    default = {unit.key: unit for unit in runs.stages()["default"]()}
    assert module["module-ebnas_retrain_seed-0"].spec() == default["default_seed-0"].spec()


def test_sign_rows_use_the_ste_in_search_and_retraining(tmp_path):
    runs = _ablations(tmp_path)
    units = runs.stages()["sign"]()
    search, train = units[0], units[len(units) // 2]  # seed 0's search and retraining
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
    row = runs._pairs_markdown(pairs, "reference searches")[4]
    assert row == "| 0 | collapse | 7 / 10 | 3 (30%) | 450 / 600 | no | 84.00 / - |"


def test_supernet_row_searches_on_three_times_the_images_and_shards_by_seed(tmp_path):
    runs = _ablations(tmp_path)
    units = runs.stages()["supernet"]()
    # configs/search_fashion_mnist.yaml searches on 6,000 images (3,000 + 3,000): 18,000 here,
    # everything else the reference's.
    assert runs.supernet_images() == 18000
    reference = _sets(runs.stages()["default"]()[0])
    assert _sets(units[0]) == [*reference, "max_examples=18000"]
    assert config_lib.load("search", [protocol.ROOT / runs.exp.budget.search_config],
                           _sets(units[0]))["max_examples"] == 18000
    # Searches first, then retrainings: `supernet@K/2` gives process K seed K - 1's search and
    # the retraining of its genotype.
    assert [u.key for u in units] == ["images-18000_search-0", "images-18000_search-1",
                                      "images-18000_seed-0", "images-18000_seed-1"]
    assert [u.key for u in units[0::2]] == ["images-18000_search-0", "images-18000_seed-0"]
    assert [u.key for u in units[1::2]] == ["images-18000_search-1", "images-18000_seed-1"]


@pytest.mark.parametrize("name,search_set,searched_with,train_sets,retrained_with", [
    # EBNAS's search module (real weights, BN on batch statistics) with QuickNet's ReLU -> BN
    # and SteSign at 1.25; its genotypes retrained with QuickNet's block.
    ("quicknet_search", "module=quicknet_search",
     ModuleStructure(conv_activation="relu", sign="ste", sign_width=1.25), ["module=quicknet"],
     PRESETS["quicknet"]),
    # The retraining module in the supernet; its genotypes retrained as the row's.
    ("retrain_module", "module=ebnas_retrain", PRESETS["ebnas_retrain"], [],
     PRESETS["ebnas_retrain"]),
])
def test_searched_with_stages_search_the_row_with_their_module_and_retrain_its_genotypes(
        tmp_path, name, search_set, searched_with, train_sets, retrained_with):
    runs, _ = _supernet_row(tmp_path)
    label = f"images-18000-{name}"
    _cache(tmp_path / "r", f"{label}_search-0", {"genotype": published("EBNAS").to_dict()})
    units = runs.stages()[name]()
    assert [u.key for u in units] == [f"{label}_search-0", f"{label}_search-1",
                                      f"{label}_seed-0", f"{label}_seed-1"]
    # The supernet row's search (its images) with the module; the row's retraining with the
    # retraining overrides, of the new search's genotype.
    row = runs.stages()["supernet"]()
    assert _sets(units[0]) == [*_sets(row[0]), search_set]
    assert _sets(units[2]) == [*_sets(row[2]), *train_sets]
    assert units[2].spec()["genotype"] == published("EBNAS").to_dict()
    search = config_lib.load("search", [protocol.ROOT / runs.exp.budget.search_config],
                             _sets(units[0]))
    train = config_lib.load("train", [protocol.ROOT / runs.exp.budget.train_config],
                            _sets(units[2]))
    assert ModuleStructure.from_config(search["module"]) == searched_with
    assert train["seed"] == 0 and ModuleStructure.from_config(
        train["module"] or get_space(train["space"]).network_module) == retrained_with


def test_supernet_pt_selects_on_the_row_searches_and_retrains_compares_selections(tmp_path):
    compare = tmp_path / "compare"
    runs = _ablations(tmp_path, reuse=[compare])
    units = runs.stages()["supernet_pt"]()
    assert [u.key for u in units] == [
        "images-18000_pt-0", "images-18000_pt-1", "images-18000-pt_seed-0",
        "images-18000-pt_seed-1", "default-pt_seed-0", "default-pt_seed-1"]
    assert units[0].spec()["search"] == "images-18000_search-0"  # the row's own supernet
    # The reference: compare.py's selection on its search 1, retrained with seed 1, is the
    # same run as compare's searched_pt-1_seed-1, so it is copied, not run again.
    selected = published("DARTS_V2").to_dict()
    _cache(compare, "derive_pt-1", {"genotype": selected})
    reference = units[5]
    same = runs.exp.train_unit("x", "genotype", 1, genotype=selected)
    _cache(compare, "searched_pt-1_seed-1", {"test_top1": 0.85}, spec=same.spec())
    assert reference.spec()["genotype"] == selected
    assert runs.exp.reusable(reference.spec())["reused_from"] == \
        "compare/units/searched_pt-1_seed-1.json"
    # compare.py's selection 0 has not run: a one-line error that names the fix
    with pytest.raises(protocol.UserError, match="--reuse"):
        units[4].spec()


def test_supernet_nostop_continues_each_seeds_search_with_early_stopping_off(tmp_path):
    runs = _ablations(tmp_path)
    units = runs.stages()["supernet_nostop"]()
    assert [u.key for u in units] == [
        "images-18000-nostop_search-0", "images-18000-nostop_search-1",
        "images-18000-nostop_seed-0", "images-18000-nostop_seed-1"]
    supernet = runs.stages()["supernet"]()[1]  # the supernet row's search of seed 1
    assert units[1].spec() == {"tool": "search", "continues": "images-18000_search-1",
                               "sets": [*_sets(supernet), *ablations.early_stop_off()]}
    # The copy: only of a finished unit, with its checkpoints, whole.
    out = runs.exp.work_dir / "images-18000-nostop_search-1"
    with pytest.raises(protocol.UserError, match="has not run yet"):
        runs.exp._copy_search("images-18000_search-1", out)
    _cache(tmp_path / "r", "images-18000_search-1", {"genotype": {}})
    source = runs.exp.work_dir / "images-18000_search-1"
    source.mkdir(parents=True)
    with pytest.raises(protocol.UserError, match="no checkpoints"):
        runs.exp._copy_search("images-18000_search-1", out)
    (source / "checkpoints").mkdir()
    (source / "checkpoints" / "ckpt-7.index").write_bytes(b"7")
    (source / "search_log.jsonl").write_text("{}\n")
    runs.exp._copy_search("images-18000_search-1", out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "checkpoints", "checkpoints/ckpt-7.index", "search_log.jsonl"]
    assert not list(runs.exp.work_dir.glob("*.partial"))


def test_supernet_random_draws_once_in_the_window_around_the_rows_mean_ops(tmp_path):
    from experiments.ops_matching import genotype_cost_model
    from ubnas_tf.search_space.genotype import Genotype

    runs, found = _supernet_row(tmp_path)
    search, train = runs.exp.configs()
    model = genotype_cost_model(search, train, runs.exp.dataset_info())
    target = sum(model.genotype_ops(Genotype.from_dict(g)) for g in found) / 2
    drawn = runs.supernet_random_genotypes()
    assert drawn["target_ops"] == pytest.approx(target)
    assert len(drawn["genotypes"]) == ablations.SUPERNET_RANDOM
    for entry in drawn["genotypes"]:
        ops = model.genotype_ops(Genotype.from_dict(entry["genotype"]))
        assert ops == entry["ops"] and abs(ops / target - 1) <= runs.exp.budget.ops_tolerance
    # Written once: later sessions retrain the same networks whatever the units say now.
    _cache(tmp_path / "r", "images-18000_search-0", {"genotype": found[1]})
    assert runs.supernet_random_genotypes() == drawn
    # A record of fewer networks (drawn when SUPERNET_RANDOM was smaller) grows: its networks
    # first, in the same window, then new ones; one that is not the same draw is refused.
    path = tmp_path / "r" / "supernet_random_genotypes.json"
    atomic_write_json(path, {**drawn, "genotypes": drawn["genotypes"][:3]})
    assert runs.supernet_random_genotypes() == drawn
    assert json.loads(path.read_text()) == drawn
    atomic_write_json(path, {**drawn, "genotypes": drawn["genotypes"][1:4]})
    with pytest.raises(protocol.UserError, match="not the first of the same draw"):
        runs.supernet_random_genotypes()


def test_supernet_baselines_train_quicknet_at_the_random_networks_target(tmp_path, row_records):
    from ubnas_tf.network.baselines import build_baseline
    from ubnas_tf.network.cost import profile

    runs, found = _supernet_row(tmp_path, row_records)
    units = runs.stages()["supernet_baselines"]()
    assert [u.key for u in units] == ["images-18000-quicknet_seed-0",
                                      "images-18000-quicknet_seed-1"]
    target = runs.supernet_random_genotypes()["target_ops"]
    assert runs.supernet_baseline_sizes()["target_ops"] == target
    # The network the unit's --set overrides build has OPs within the window of the target.
    config = config_lib.load("train", [protocol.ROOT / runs.exp.budget.train_config],
                             _sets(units[1]))
    assert units[1].spec()["model"] == "quicknet" and config["seed"] == 1
    ops = profile(build_baseline("quicknet", runs.exp.dataset_info(), config)).ops
    assert abs(ops / target - 1) <= runs.exp.budget.ops_tolerance


def test_versus_random_compares_network_means_by_hand(tmp_path):
    runs = _ablations(tmp_path)
    results = {"images-18000-random-0": (0.80, 0.82), "images-18000-random-1": (0.84, 0.84),
               "images-18000": (0.85, 0.87), "images-18000-quicknet": (0.88, 0.86)}
    for label, values in results.items():
        for seed, value in enumerate(values):
            _cache(tmp_path / "r", f"{label}_seed-{seed}", {"test_top1": value})
    rows = {row["row"]: row for row in runs.supernet_versus_random(18000)}
    assert list(rows) == ["random", "alphas", "quicknet"]  # rows without runs are left out
    assert rows["random"]["networks"] == pytest.approx([0.81, 0.84])
    # Each search is one network: 0.86 against the random networks' 0.825. Of the 6 splits of
    # {0.85, 0.87, 0.81, 0.84} into pairs, 2 differ by 0.035 or more: p = 1/3.
    assert rows["alphas"]["minus_random"] == pytest.approx(0.035)
    assert rows["alphas"]["p"] == pytest.approx(1 / 3)
    # QuickNet is one network (its seeds' mean, 0.87): no test against 2 random networks.
    assert rows["quicknet"]["networks"] == pytest.approx([0.87])
    assert rows["quicknet"]["minus_random"] == pytest.approx(0.045)
    assert rows["quicknet"]["p"] is None
    line = runs._versus_random_markdown(list(rows.values()), "title")[5]
    assert line == "| alphas | 85.00, 87.00 | 86.00 | +3.50 | 0.333 |"


def test_a_family_with_its_own_searches_compares_them_with_its_random_networks(tmp_path):
    runs = _ablations(tmp_path)
    results = {"images-18000-quicknet_block-random-0": (0.80, 0.82),
               "images-18000-quicknet_block-random-1": (0.84, 0.84),
               "images-18000-quicknet_block": (0.83, 0.81),
               "images-18000-quicknet_search": (0.85, 0.87)}
    for label, values in results.items():
        for seed, value in enumerate(values):
            _cache(tmp_path / "r", f"{label}_seed-{seed}", {"test_top1": value, "ops": 4e5})
    rows = {row["row"]: row for row in runs.family_versus_random(18000, "quicknet_block")}
    searched = "alphas, searched with it (quicknet_search)"
    assert list(rows) == ["random", "alphas", searched]
    # Random network means 0.81 and 0.84 (0.825); the row's genotypes 0.82, the searches with
    # the block 0.86 (p = 1/3, as in the test above).
    assert rows["alphas"]["minus_random"] == pytest.approx(-0.005)
    assert rows[searched]["minus_random"] == pytest.approx(0.035)
    assert rows[searched]["p"] == pytest.approx(1 / 3)
    table = [row["row"] for row in runs._family_rows(18000, "quicknet_block")]
    assert table == ["18,000, alphas", "18,000, alphas of searches with it (quicknet_search)",
                     "random networks of the 18,000 rows"]
    # Before its searches have run, the family's table leaves their row out.
    empty = _ablations(tmp_path / "empty")
    assert [row["row"] for row in empty._family_rows(18000, "quicknet_block")] == [
        "18,000, alphas", "random networks of the 18,000 rows"]


@pytest.mark.parametrize("family,changed", [
    ("transitions", lambda config: config["reduction"] == "quicknet"),
    ("projection",
     lambda config: ModuleStructure.from_config(config["module"]) == dataclasses.replace(
         ModuleStructure.from_config("ebnas_retrain"), projection_shortcut=True)),
    ("quicknet_block",
     lambda config: ModuleStructure.from_config(config["module"]) == ModuleStructure(
         weights="sign", conv_activation="relu", norm="batch_norm", affine=True, sign="ste",
         sign_width=1.25, weight_clip=1.25)),
])
def test_a_family_retrains_the_rows_genotypes_and_random_networks_with_its_change(
        tmp_path, row_records, family, changed):
    random = ablations.FAMILIES[family].random
    runs, found = _supernet_row(tmp_path, row_records)
    units = runs.stages()[family]()
    # Search K's genotype retrained with seed K, then every random network's seed 0 before any
    # seed 1 (a stage stopped half-way has one run of each network).
    assert [u.key for u in units] == (
        [f"images-18000-{family}_seed-0", f"images-18000-{family}_seed-1"]
        + [f"images-18000-{family}-random-{j}_seed-{seed}"
           for seed in (0, 1) for j in range(random)])
    drawn = runs.supernet_random_genotypes()["genotypes"]
    for unit in units:
        spec = unit.spec()
        config = config_lib.load("train", [protocol.ROOT / runs.exp.budget.train_config],
                                 spec["sets"])
        assert changed(config)
        seed = config["seed"]
        if "-random-" in unit.key:
            index = int(unit.key.split("-random-")[1].split("_")[0])
            assert spec["genotype"] == drawn[index]["genotype"]
        else:
            assert spec["genotype"] == found[seed]


def test_supernet_long_retrains_the_row_quicknet_and_random_networks_at_the_long_budget(
        tmp_path, row_records):
    from ubnas_tf.network.baselines import build_baseline
    from ubnas_tf.network.cost import profile

    runs, found = _supernet_row(tmp_path, row_records)
    units = runs.stages()["supernet_long"]()
    assert [u.key for u in units] == (
        ["images-18000-long_seed-0", "images-18000-long_seed-1",
         "images-18000-long-quicknet_seed-0", "images-18000-long-quicknet_seed-1"]
        + [f"images-18000-long-random-{j}_seed-0" for j in range(ablations.LONG_RANDOM)])
    long_epochs = runs.exp.budget.budget_epochs[1]
    assert long_epochs > runs.exp.budget.train_epochs()
    drawn = runs.supernet_random_genotypes()
    for unit in units:
        spec = unit.spec()
        config = config_lib.load("train", [protocol.ROOT / runs.exp.budget.train_config],
                                 spec["sets"])
        assert config["epochs"] == unit.epochs == long_epochs  # the ETA knows it too
        if "-random-" in unit.key:
            index = int(unit.key.split("-random-")[1].split("_")[0])
            assert spec["genotype"] == drawn["genotypes"][index]["genotype"]
        elif spec["model"]:  # the same QuickNet as supernet_baselines', only longer
            ops = profile(build_baseline("quicknet", runs.exp.dataset_info(), config)).ops
            assert abs(ops / drawn["target_ops"] - 1) <= runs.exp.budget.ops_tolerance
        else:
            assert spec["genotype"] == found[config["seed"]]


def test_templates_retrain_random_networks_of_fewer_wider_cells_in_the_rows_window(
        tmp_path, row_records):
    from ubnas_tf.network.cost import profile
    from ubnas_tf.network.genotype_network import build_from_config
    from ubnas_tf.search_space.genotype import Genotype

    runs, _ = _supernet_row(tmp_path, row_records)
    units = runs.stages()["templates"]()
    random, names = ablations.TEMPLATE_RANDOM, list(ablations.TEMPLATES)
    # Every template's networks with seed 0 before any seed 1.
    assert [u.key for u in units] == [f"images-18000-{name}-random-{j}_seed-{seed}"
                                      for seed in (0, 1) for name in names for j in range(random)]
    target = runs.supernet_random_genotypes()["target_ops"]
    for unit in units[:len(names) * random]:
        name = unit.key.split("-random-")[0].removeprefix("images-18000-")
        template = ablations.TEMPLATES[name]
        spec = unit.spec()
        config = config_lib.load("train", [protocol.ROOT / runs.exp.budget.train_config],
                                 spec["sets"])
        assert (config["channels"], config["stem_multiplier"]) == (
            template["channels"], template["stem_multiplier"])
        genotype = Genotype.from_dict(spec["genotype"])
        assert len(genotype.normal) == len(genotype.reduce) == 2 * template["nodes"]
        # The network the retraining builds, not the draw's cost model, is in the window.
        ops = profile(build_from_config(genotype, runs.exp.dataset_info(), config)).ops
        assert abs(ops / target - 1) <= runs.exp.budget.ops_tolerance


def test_quicknet_ops_retrain_quicknets_of_random_blocks_in_the_rows_window(
        tmp_path, row_records):
    from ubnas_tf.network.baselines import build_baseline
    from ubnas_tf.network.cost import profile

    runs, _ = _supernet_row(tmp_path, row_records)
    units = runs.stages()["quicknet_ops"]()
    count = ablations.QUICKNET_OPS_RANDOM
    assert [u.key for u in units] == [f"images-18000-quicknet_ops-random-{j}_seed-{seed}"
                                      for seed in (0, 1) for j in range(count)]
    record = runs.quicknet_ops_record()
    target = runs.supernet_random_genotypes()["target_ops"]
    # QuickNet's size at the row's OPs, its blocks drawn: distinct networks, none `none`.
    assert record["settings"] == runs.supernet_baseline_sizes()["quicknet"]["settings"]
    assert record["target_ops"] == target and len(record["networks"]) == count
    blocks = [tuple(network["block_ops"]) for network in record["networks"]]
    assert len(set(blocks)) == count and all(len(b) == 6 and "none" not in b for b in blocks)
    for j, unit in enumerate(units[:count]):
        config = config_lib.load("train", [protocol.ROOT / runs.exp.budget.train_config],
                                 _sets(unit))
        assert unit.spec()["model"] == "quicknet" and config["seed"] == 0
        model = build_baseline("quicknet", runs.exp.dataset_info(), config)
        # The network the retraining builds has the record's blocks and OPs, in the window.
        ops = profile(model).ops
        assert ops == record["networks"][j]["ops"]
        assert abs(ops / target - 1) <= runs.exp.budget.ops_tolerance
        assert f"section2_block1_{blocks[j][-1]}" in {layer.name for layer in model.layers}


@pytest.mark.parametrize("name", list(ablations.BLOCK_SEARCHES))
def test_block_search_searches_in_the_quicknet_ops_window_and_retrains_its_blocks(
        tmp_path, row_records, name):
    from ubnas_tf.network.baselines import build_baseline
    from ubnas_tf.network.cost import profile
    from ubnas_tf.search.block_architect import BlockCostModel, block_primitives

    runs, _ = _supernet_row(tmp_path, row_records)
    units = runs.stages()[name]()
    assert [u.key for u in units] == [
        *(f"images-18000-{name}_search-{seed}" for seed in (0, 1)),
        *(f"images-18000-{name}_seed-{seed}" for seed in (0, 1))]
    record, info = runs.quicknet_ops_record(), runs.exp.dataset_info()
    # The random blocks' template, or the one BLOCK_TEMPLATES gives the search.
    template = {**record["settings"], **ablations.BLOCK_TEMPLATES.get(name, {})}
    last = template["blocks"][-1] - 1  # the last block's index in its section
    some = ["bin_conv_5x5", "avg_pool_3x3", "bin_conv_3x3", "skip_connect", "max_pool_3x3",
            "bin_dil_conv_3x3"]
    found = [["bin_conv_3x3"] * sum(template["blocks"]),
             [some[i % len(some)] for i in range(sum(template["blocks"]))]]
    for seed, unit in enumerate(units[:2]):
        config = config_lib.load("search_blocks", [], _sets(unit))
        # The window and images; seed K.
        assert (config["seed"], config["max_examples"]) == (seed, runs.supernet_images())
        assert config["template"] == template
        variant = config_lib.load("search_blocks", [], ablations.BLOCK_SEARCHES[name])
        # The window's target, unless the variant sets its own (the dilation sub-space: none).
        sets_target = any(s.startswith("ops_budget.target=")
                          for s in ablations.BLOCK_SEARCHES[name])
        assert config["ops_budget"]["target"] == (variant["ops_budget"]["target"] if sets_target
                                                  else record["target_ops"])
        assert config["ops_budget"]["tolerance"] == record["tolerance"]
        # The variant's own settings, over the window's target and tolerance.
        for key in ("op_weights", "module", "primitives"):
            assert config[key] == variant[key]
        assert config["ops_budget"]["strength"] == variant["ops_budget"]["strength"]
        _cache(tmp_path / "r", unit.key, {"blocks": {"ops": found[seed]}})
    cost_model = BlockCostModel(info, primitives=block_primitives(), **template)
    for seed, unit in enumerate(units[2:]):
        config = config_lib.load("train", [protocol.ROOT / runs.exp.budget.train_config],
                                 _sets(unit))
        assert unit.spec()["model"] == "quicknet" and config["seed"] == seed
        model = build_baseline("quicknet", info, config)
        assert profile(model).ops == cost_model.network_ops(found[seed])
        assert f"section2_block{last}_{found[seed][-1]}" in {layer.name for layer in model.layers}


def test_block_search_seeds_retrain_each_searched_network_with_every_seed(tmp_path, row_records):
    runs, _ = _supernet_row(tmp_path, row_records)
    found = [["bin_conv_3x3"] * 6, ["bin_conv_5x5", "avg_pool_3x3", "bin_conv_3x3",
                                    "skip_connect", "max_pool_3x3", "bin_dil_conv_3x3"]]
    for search, ops in enumerate(found):
        _cache(tmp_path / "r", f"images-18000-block_search_search-{search}",
               {"blocks": {"ops": ops}})
    units = runs.stages()["block_search_seeds"]()
    keys = [f"images-18000-block_search-net-{search}_seed-{seed}" for seed in (0, 1)
            for search in (0, 1)]
    assert [unit.key for unit in units] == keys
    own = {unit.key: unit for unit in runs.stages()["block_search"]()}
    for unit in units:
        search, seed = (int(part.split("_")[0]) for part in unit.key.split("-")[-2:])
        config = config_lib.load("train", [protocol.ROOT / runs.exp.budget.train_config],
                                 _sets(unit))
        assert config["seed"] == seed and config["baselines"]["quicknet"]["ops"] == found[search]
        if search == seed:  # the search's own retraining: the same run, reused
            assert unit.spec() == own[f"images-18000-block_search_seed-{seed}"].spec()


@pytest.mark.parametrize("stage, search, random, record, seeds", [
    ("block_search_long", "block_search", "quicknet_ops-random", "quicknet_ops_record", 1),
    ("dilation_long", "block_search_dilation", "dilation-random", "dilation_record", 1),
    ("uniform_long", "block_search_uniform", "quicknet_ops-random", "quicknet_ops_record",
     ablations.UNIFORM_LONG_SEEDS),
    ("narrow_long", "block_search_uniform_narrow", "narrow-random", "narrow_record",
     ablations.NARROW_LONG_SEEDS)])
def test_long_stages_retrain_the_searched_and_random_blocks_at_the_long_budget(
        tmp_path, row_records, stage, search, random, record, seeds):
    runs, _ = _supernet_row(tmp_path, row_records)
    blocks = sum(runs.search_settings(search)["blocks"])
    found = [["bin_dil_conv_5x5"] * 2 + ["avg_pool_3x3"] * (blocks - 2),
             ["bin_conv_3x3"] * blocks]
    for index, ops in enumerate(found):
        _cache(tmp_path / "r", f"images-18000-{search}_search-{index}",
               {"blocks": {"ops": ops}})
    units = runs.stages()[stage]()
    if stage == "narrow_long":  # then QuickNet's block at every position of the template
        quicknet, units = units[-seeds:], units[:-seeds]
        assert [unit.key for unit in quicknet] == [
            f"images-18000-long-narrow-quicknet_seed-{seed}" for seed in range(seeds)]
        for seed, unit in enumerate(quicknet):
            config = config_lib.load("train", [protocol.ROOT / runs.exp.budget.train_config],
                                     _sets(unit))
            assert (config["epochs"], config["seed"]) == (runs.exp.budget.budget_epochs[1], seed)
            assert {key: config["baselines"]["quicknet"][key] for key in ("filters", "blocks")} \
                == ablations.NARROW_TEMPLATE
            assert config["baselines"]["quicknet"]["ops"] is None  # QuickNet's own block
    assert [unit.key for unit in units] == [key for seed in range(seeds) for key in (
        *(f"images-18000-long-{search}-net-{index}_seed-{seed}" for index in (0, 1)),
        *(f"images-18000-long-{random}-{j}_seed-{seed}" for j in range(ablations.LONG_RANDOM)))]
    record = getattr(runs, record)()
    expected = found + [network["block_ops"]
                        for network in record["networks"][:ablations.LONG_RANDOM]]
    for index, unit in enumerate(units):
        config = config_lib.load("train", [protocol.ROOT / runs.exp.budget.train_config],
                                 _sets(unit))
        assert config["epochs"] == runs.exp.budget.budget_epochs[1]
        assert config["seed"] == index // len(expected)
        assert config["baselines"]["quicknet"]["ops"] == expected[index % len(expected)]
        assert unit.epochs == runs.exp.budget.budget_epochs[1]


def test_quicknet_ops_versus_random_and_listing_by_hand(tmp_path):
    runs, _ = _supernet_row(tmp_path)
    atomic_write_json(tmp_path / "r" / "quicknet_ops_random.json", {
        "settings": {"filters": [16, 32], "blocks": [1, 1]}, "networks": [
            {"block_ops": ["bin_conv_5x5", "skip_connect"], "ops": 480000.0},
            {"block_ops": ["avg_pool_3x3", "bin_dil_conv_3x3"], "ops": 500000.0}]})
    results = {"images-18000-quicknet_ops-random-0": (0.86, 0.88),
               "images-18000-quicknet_ops-random-1": (0.85,),
               "images-18000-quicknet": (0.88, 0.86), "images-18000": (0.89, 0.90),
               "images-18000-block_search": (0.84, 0.83)}
    for label, values in results.items():
        for seed, value in enumerate(values):
            _cache(tmp_path / "r", f"{label}_seed-{seed}", {"test_top1": value})
    rows = {row["row"]: row for row in runs.quicknet_ops_versus_random(18000)}
    assert list(rows) == ["random", "quicknet", "alphas (the row's cells)",
                          "block_search (its blocks)"]  # the other block searches: not run
    # Each block search is one network: (0.84, 0.83) against (0.87, 0.85): -0.025.
    assert rows["block_search (its blocks)"]["minus_random"] == pytest.approx(-0.025)
    # With every seed: network 0 (0.84, 0.86) and 1 (0.83, 0.87) both 0.85, -0.01.
    for key, value in (("net-0_seed-0", 0.84), ("net-0_seed-1", 0.86), ("net-1_seed-0", 0.83),
                       ("net-1_seed-1", 0.87)):
        _cache(tmp_path / "r", f"images-18000-block_search-{key}", {"test_top1": value})
    row = {r["row"]: r for r in runs.quicknet_ops_versus_random(18000)}[
        "block_search, every seed (network means)"]
    assert row["networks"] == pytest.approx([0.85, 0.85])
    assert row["minus_random"] == pytest.approx(-0.01) and row["p"] == pytest.approx(1.0)
    for seed, ops in enumerate((["bin_conv_3x3", "avg_pool_3x3"], ["skip_connect"] * 2)):
        _cache(tmp_path / "r", f"images-18000-block_search_search-{seed}", {
            "blocks": {"ops": ops, "network_ops": 490000 + seed}, "search_seconds": 700.4,
            "last_change_epoch": 6 + seed})
    listing = runs._block_search_markdown(18000, "block_search")
    assert listing[0].startswith("Block searches (`block_search`, widths [16, 32] x blocks "
                                 "[1, 1]; ")
    assert listing[4:] == [
        "| 0 | conv_3x3, avg_pool_3x3 | 0.490M | 700 | 6 | 84.00 |",
        "| 1 | skip_connect, skip_connect | 0.490M | 700 | 7 | 83.00 |", ""]
    assert rows["random"]["networks"] == pytest.approx([0.87, 0.85])
    assert rows["quicknet"]["minus_random"] == pytest.approx(0.87 - 0.86)
    # The row's two searches (0.89, 0.90) against the random blocks (0.87, 0.85): +0.035;
    # of the 6 splits into pairs, 2 (this one and its mirror) differ by 0.035 or more.
    assert rows["alphas (the row's cells)"]["minus_random"] == pytest.approx(0.035)
    assert rows["alphas (the row's cells)"]["p"] == pytest.approx(1 / 3)
    # The figure: every run of each group at its OPs (not cached here: None, not drawn).
    points = runs.blocks_points(18000)
    assert [y for _, y in points["random"]] == [0.86, 0.88, 0.85]
    assert [y for _, y in points["block_search"]] == [0.84, 0.86, 0.83, 0.87]
    assert points["uniform_topk"] == []
    listing = runs._random_blocks_markdown(18000, ablations.QUICKNET_OPS_RECORD,
                                           "quicknet_ops-random", "random blocks")
    assert listing[0] == ("QuickNets of random blocks (`quicknet_ops_random.json`, widths "
                          "[16, 32] x blocks [1, 1]; blocks in order):")
    assert listing[4:6] == [
        "| 0 | conv_5x5, skip_connect | 0.480M | 2 | 87.00 |",
        "| 1 | avg_pool_3x3, dil_conv_3x3 | 0.500M | 1 | 85.00 |"]


def test_dilation_random_draws_quicknets_of_plain_or_dilated_3x3_blocks_at_its_ops(
        tmp_path, row_records):
    from ubnas_tf.network.baselines import build_baseline
    from ubnas_tf.network.cost import profile

    runs, _ = _supernet_row(tmp_path, row_records)
    units = runs.stages()["dilation_random"]()
    assert [u.key for u in units] == [f"images-18000-dilation-random-{j}_seed-{seed}"
                                      for seed in (0, 1) for j in range(ablations.DILATION_RANDOM)]
    record = runs.dilation_record()
    quicknet = runs.supernet_baseline_sizes()["quicknet"]
    assert record["settings"] == quicknet["settings"]
    drawn = [network["block_ops"] for network in record["networks"]]
    assert all(set(ops) <= set(ablations.DILATION_OPS) and len(ops) == 6 for ops in drawn)
    info = runs.exp.dataset_info()
    for unit, ops in zip(units, drawn):
        config = config_lib.load("train", [protocol.ROOT / runs.exp.budget.train_config],
                                 _sets(unit))
        assert config["baselines"]["quicknet"]["ops"] == ops
        # A dilated 3x3 conv costs what a plain one does: every network has QuickNet's OPs.
        assert profile(build_baseline("quicknet", info, config)).ops == quicknet["ops"]
    # The search of that sub-space: its two ops, no budget.
    search = runs.stages()["block_search_dilation"]()[0]
    config = config_lib.load("search_blocks", [], _sets(search))
    assert config["primitives"] == list(ablations.DILATION_OPS)
    assert config["ops_budget"]["target"] is None


def test_dilation_versus_random_by_hand(tmp_path):
    runs, _ = _supernet_row(tmp_path)
    results = {"images-18000-dilation-random-0": (0.86, 0.88),
               "images-18000-dilation-random-1": (0.84,),
               "images-18000-quicknet": (0.88, 0.86),
               "images-18000-block_search_dilation": (0.89, 0.85)}
    for label, values in results.items():
        for seed, value in enumerate(values):
            _cache(tmp_path / "r", f"{label}_seed-{seed}", {"test_top1": value})
    rows = {row["row"]: row for row in runs.dilation_versus_random(18000)}
    assert list(rows) == ["random", "quicknet", "block_search_dilation (its blocks)"]
    assert rows["random"]["networks"] == pytest.approx([0.87, 0.84])
    # QuickNet one network (0.87), the searches two (0.89, 0.85), against a random mean 0.855.
    assert rows["quicknet"]["minus_random"] == pytest.approx(0.015)
    assert rows["block_search_dilation (its blocks)"]["minus_random"] == pytest.approx(0.015)
    # Of the 6 splits of {0.89, 0.85, 0.87, 0.84} into pairs, those whose means differ by
    # 0.015 or more: {0.89, 0.85} / {0.87, 0.84} (0.015), {0.89, 0.87} / {0.85, 0.84} (0.035),
    # {0.89, 0.84} / {0.85, 0.87} (0.005: no), and their mirrors: 4 of 6.
    assert rows["block_search_dilation (its blocks)"]["p"] == pytest.approx(4 / 6)


def test_narrow_retrains_quicknets_block_and_random_blocks_of_its_template_in_the_window(
        tmp_path, row_records):
    from ubnas_tf.network.baselines import build_baseline
    from ubnas_tf.network.cost import profile
    from ubnas_tf.search.block_architect import BlockCostModel, block_primitives

    runs, _ = _supernet_row(tmp_path, row_records)
    units = runs.stages()["narrow"]()
    count = ablations.NARROW_RANDOM
    assert [u.key for u in units] == [
        key for seed in (0, 1) for key in (
            f"images-18000-narrow-quicknet_seed-{seed}",
            *(f"images-18000-narrow-random-{j}_seed-{seed}" for j in range(count)))]
    window = runs.quicknet_ops_record()
    record = runs.narrow_record()
    assert record["settings"] == {"filters": [12, 24, 48], "blocks": [5, 5, 5]}
    assert (record["target_ops"], record["tolerance"]) == (window["target_ops"],
                                                          window["tolerance"])
    drawn = [tuple(network["block_ops"]) for network in record["networks"]]
    assert len(set(drawn)) == count and all(len(ops) == 15 and "none" not in ops
                                            for ops in drawn)
    info = runs.exp.dataset_info()

    def built(unit):
        config = config_lib.load("train", [protocol.ROOT / runs.exp.budget.train_config],
                                 _sets(unit))
        assert unit.spec()["model"] == "quicknet"
        return build_baseline("quicknet", info, config), config

    # QuickNet's block at all 15 positions: 15 binary 3x3 convs where the row's template fits
    # 6 (in the real window, 0.485M +- 10%, it costs 0.454M: tools/search_blocks.py's cost
    # model, costed here independently of the network built).
    model, config = built(units[0])
    names = {layer.name for layer in model.layers}
    assert config["baselines"]["quicknet"]["filters"] == [12, 24, 48]
    assert all(f"section{s}_block{b}_bconv" in names for s in range(3) for b in range(5))
    narrow_costs = BlockCostModel(info, primitives=block_primitives(), **record["settings"])
    assert profile(model).ops == narrow_costs.network_ops(["bin_conv_3x3"] * 15) == 453_828
    for j, unit in enumerate(units[1:1 + count]):
        model, config = built(unit)
        assert config["seed"] == 0 and config["baselines"]["quicknet"]["ops"] == list(drawn[j])
        ops = profile(model).ops
        assert ops == record["networks"][j]["ops"]
        assert abs(ops / window["target_ops"] - 1) <= window["tolerance"]


def test_narrow_versus_random_by_hand(tmp_path, row_records):
    runs, _ = _supernet_row(tmp_path, row_records)
    name = "block_search_uniform_narrow"
    results = {"images-18000-narrow-random-0": (0.86, 0.88),
               "images-18000-narrow-random-1": (0.84,),
               "images-18000-quicknet": (0.88, 0.86),
               "images-18000-narrow-quicknet": (0.90,),
               f"images-18000-{name}": (0.89, 0.85),
               f"images-18000-{name}-net-0": (0.89, 0.87),
               f"images-18000-{name}-net-1": (0.85, 0.85)}
    for label, values in results.items():
        for seed, value in enumerate(values):
            _cache(tmp_path / "r", f"{label}_seed-{seed}", {"test_top1": value})
    rows = {row["row"]: row for row in runs.narrow_versus_random(18000)}
    # No uniform search in the row's template has run: its row is left out.
    assert list(rows) == ["random", "quicknet (widths [16, 32, 64] x blocks [2, 2, 2])",
                          "QuickNet's block at every position", f"{name} (its blocks)",
                          f"{name}, every seed (network means)"]
    assert rows["random"]["networks"] == pytest.approx([0.87, 0.84])
    minus = {row: rows[row]["minus_random"] for row in rows}
    # Against a random mean of 0.855: QuickNet 0.87, QuickNet's block in the narrow template
    # 0.90, the searches' seed-K runs 0.89 and 0.85 (0.87), their network means 0.88, 0.85.
    assert list(minus.values()) == pytest.approx([0.0, 0.015, 0.045, 0.015, 0.01])
    assert rows[f"{name}, every seed (network means)"]["networks"] == pytest.approx([0.88, 0.85])
    points = runs.narrow_points(18000)  # the figure: every run (OPs not cached here)
    assert [y for _, y in points["random"]] == [0.86, 0.88, 0.84]
    assert [y for _, y in points[name]] == [0.89, 0.87, 0.85, 0.85]
    assert points["block_search_uniform"] == [] and points["quicknet"] == [(None, 0.88),
                                                                         (None, 0.86)]
    # At the long budget: the long runs only (LONG_RANDOM random networks; the first is
    # narrow-random-0's, here 0.90 and 0.92), none of the 2-epoch runs above.
    assert runs.narrow_versus_random(18000, long=True) == []
    for label, values in (("narrow-random-0", (0.90, 0.92)), ("narrow-random-1", (0.88,)),
                          (f"{name}-net-0", (0.89, 0.91)), (f"{name}-net-1", (0.87,))):
        for seed, value in enumerate(values):
            _cache(tmp_path / "r", f"images-18000-long-{label}_seed-{seed}", {"test_top1": value})
    rows = {row["row"]: row for row in runs.narrow_versus_random(18000, long=True)}
    assert list(rows) == ["random", f"{name}, every seed (network means)"]
    assert rows["random"]["networks"] == pytest.approx([0.91, 0.88])
    assert rows[f"{name}, every seed (network means)"]["networks"] == pytest.approx([0.90, 0.87])
    assert rows[f"{name}, every seed (network means)"]["minus_random"] == pytest.approx(-0.01)


def test_templates_versus_random_compares_each_templates_network_means(tmp_path):
    runs = _ablations(tmp_path)
    name = list(ablations.TEMPLATES)[0]
    results = {"images-18000-random-0": (0.80, 0.82), "images-18000-random-1": (0.84, 0.84),
               f"images-18000-{name}-random-0": (0.86, 0.84),
               f"images-18000-{name}-random-1": (0.87,), "images-18000-quicknet": (0.88, 0.86)}
    for label, values in results.items():
        for seed, value in enumerate(values):
            _cache(tmp_path / "r", f"{label}_seed-{seed}", {"test_top1": value})
    rows = {row["row"]: row for row in runs.templates_versus_random(18000)}
    assert list(rows) == ["random", f"random, {name}", "quicknet"]
    # Each random network is one network, whatever its seeds: 0.85 and 0.87 against 0.81 and
    # 0.84; of the 6 splits into pairs, 2 (this one and its mirror) differ by 0.035 or more.
    template = rows[f"random, {name}"]
    assert template["networks"] == pytest.approx([0.85, 0.87])
    assert template["minus_random"] == pytest.approx(0.86 - 0.825)
    assert template["p"] == pytest.approx(1 / 3)
    assert rows["quicknet"]["networks"] == pytest.approx([0.87])


def test_oneshot_rankings_by_hand(tmp_path):
    runs, _ = _supernet_row(tmp_path)
    a, b, c, d = (["bin_conv_3x3"] * 6, ["skip_connect"] * 6, ["avg_pool_3x3"] * 6,
                  ["max_pool_3x3"] * 6)
    atomic_write_json(tmp_path / "r" / ablations.ONESHOT_RECORD, {"networks": [
        {"block_ops": a, "labels": ["images-18000-a"]},
        {"block_ops": b, "labels": ["images-18000-b"]},
        # One network retrained under two labels: its runs pooled, (0.87 + 0.89) / 2.
        {"block_ops": c, "labels": ["images-18000-c1", "images-18000-c2"]}]})
    for label, values in (("a", (0.85, 0.87)), ("b", (0.83, 0.85)), ("c1", (0.87,)),
                          ("c2", (0.89,))):
        for seed, value in enumerate(values):
            _cache(tmp_path / "r", f"images-18000-{label}_seed-{seed}", {"test_top1": value})
    # Best first; d was never retrained, so it is left out.
    _cache(tmp_path / "r", "images-18000-block_search_gumbel_oneshot-1", {"ranking": [
        {"block_ops": d, "oneshot_top1": 0.90}, {"block_ops": a, "oneshot_top1": 0.70},
        {"block_ops": c, "oneshot_top1": 0.65}, {"block_ops": b, "oneshot_top1": 0.60}]})
    [row] = runs.oneshot_rankings(18000)
    # (one-shot, retrained): a (0.70, 0.86), c (0.65, 0.88), b (0.60, 0.84): a-c discordant,
    # a-b and c-b concordant: tau = (2 - 1) / 3.
    assert row["search"] == "block_search_gumbel 1" and row["networks"] == 3
    assert row["tau"] == pytest.approx(1 / 3)
    assert row["oneshot_range"] == (0.60, 0.70)
    assert row["oneshot_best_retrained"] == pytest.approx(0.86)
    assert row["retrained_best"] == pytest.approx(0.88) and row["retrained_best_rank"] == 2
    # Seeds 0 and 1 of the networks retrained with both (a, b; c's first label has seed 0
    # only): a above b under both, tau +1; of the all-conv-3x3 space only a: no pair.
    assert runs.retraining_agreement() == [
        {"seeds": (0, 1), "networks": 2, "tau": pytest.approx(1.0)}]
    assert runs.retraining_agreement(("bin_conv_3x3",)) == []
    # The figure's points: search 0's supernets only (none ranked yet), then a uniform one's.
    assert runs.oneshot_points() == {name: [] for name in (*ablations.ONESHOT_SEARCHES,
                                                           ablations.NARROW_SEARCH)}
    _cache(tmp_path / "r", "images-18000-block_search_uniform_oneshot-0", {"ranking": [
        {"block_ops": c, "oneshot_top1": 0.75}, {"block_ops": d, "oneshot_top1": 0.7},
        {"block_ops": b, "oneshot_top1": 0.5}]})
    assert runs.oneshot_points()["block_search_uniform"] == [
        (75.0, pytest.approx(0.88)), (50.0, pytest.approx(0.84))]


def test_narrow_oneshot_ranking_by_hand(tmp_path):
    runs, _ = _supernet_row(tmp_path)
    name, label = ablations.NARROW_SEARCH, "images-18000"
    q, r0, r1, r2, r3, s0, s1 = ([op] * 15 for op in (
        "bin_conv_3x3", "bin_conv_5x5", "bin_dil_conv_3x3", "bin_dil_conv_5x5", "max_pool_3x3",
        "skip_connect", "avg_pool_3x3"))
    # Nothing is ranked or compared before the record and every narrow search exist.
    assert runs.retraining_agreement(networks=runs._read_narrow_networks()) == []
    atomic_write_json(tmp_path / "r" / ablations.NARROW_RECORD, {"networks": [
        {"block_ops": ops} for ops in (r0, r1, r2, r3)]})
    for search, ops in enumerate((s0, s1)):
        _cache(tmp_path / "r", f"{label}-{name}_search-{search}", {"blocks": {"ops": ops}})
    assert runs.narrow_labelled() == [
        (f"{label}-narrow-quicknet", q),
        *((f"{label}-narrow-random-{j}", ops) for j, ops in enumerate((r0, r1, r2, r3))),
        (f"{label}-{name}-net-0", s0), (f"{label}-{name}-net-1", s1)]
    for key, values in (("narrow-quicknet", (0.87, 0.89)), ("narrow-random-0", (0.86, 0.86)),
                        ("narrow-random-1", (0.85, 0.83)), ("narrow-random-2", (0.84,)),
                        (f"{name}-net-0", (0.80, 0.82)), (f"{name}-net-1", (0.83, 0.81))):
        for seed, value in enumerate(values):
            _cache(tmp_path / "r", f"{label}-{key}_seed-{seed}", {"test_top1": value})
    # The search's own network first; r3 was never retrained, r2 not ranked.
    _cache(tmp_path / "r", f"{label}-{name}_oneshot-0", {"ranking": [
        {"block_ops": ops, "oneshot_top1": top1} for ops, top1 in (
            (s0, 0.9), (s1, 0.8), (r0, 0.7), (q, 0.6), (r1, 0.5), (r3, 0.4))]})
    [row] = runs.oneshot_rankings(18000)
    # Retrained means in one-shot order: s0 0.81, s1 0.82, r0 0.86, q 0.88, r1 0.84: of the
    # 10 pairs only r0-r1 and q-r1 agree, tau = (2 - 8) / 10.
    assert row["search"] == f"{name} 0" and row["networks"] == 5
    assert row["tau"] == pytest.approx(-0.6)
    assert row["oneshot_best_retrained"] == pytest.approx(0.81)
    assert row["retrained_best"] == pytest.approx(0.88) and row["retrained_best_rank"] == 4
    # Seed 0 against seed 1 over the 5 networks with both: only s0-s1 swap, tau = 8 / 10.
    assert runs.retraining_agreement(networks=runs._read_narrow_networks()) == [
        {"seeds": (0, 1), "networks": 5, "tau": pytest.approx(0.8)}]
    assert runs.oneshot_points()[name] == [
        (90.0, pytest.approx(0.81)), (80.0, pytest.approx(0.82)), (70.0, pytest.approx(0.86)),
        (60.0, pytest.approx(0.88)), (50.0, pytest.approx(0.84))]
    # The per-network table waits for every supernet's ranking, then lists each network's
    # parameter-free blocks (skips, pools), its one-shot top-1 under each and its mean.
    assert runs._narrow_oneshot_markdown(18000) == []
    _cache(tmp_path / "r", f"{label}-{name}_oneshot-1", {"ranking": [
        {"block_ops": q, "oneshot_top1": 0.55}, {"block_ops": s1, "oneshot_top1": 0.5}]})
    table = runs._narrow_oneshot_markdown(18000)
    assert "| narrow-quicknet | 0 | 60.0% | 55.0% | 88.00 |" in table
    assert f"| {name}-net-1 | 15 | 80.0% | 50.0% | 82.00 |" in table
    assert "| narrow-random-3 | 15 | 40.0% | - | - |" in table
    # q below s1 under supernet 0 (0.6 < 0.8), above it under 1 (0.55 > 0.5): tau -1.
    assert table[-2] == ("The supernets against each other over the networks both ranked "
                         "(Kendall tau): 0 vs 1 -1.00.")


def test_uniform_topk_selects_on_validation_among_the_one_shot_best(tmp_path, row_records):
    runs, _ = _supernet_row(tmp_path, row_records)
    label, top = "images-18000", ablations.UNIFORM_TOPK
    networks = [[op] * 6 for op in ("bin_conv_3x3", "bin_conv_5x5", "bin_dil_conv_3x3",
                                    "bin_dil_conv_5x5", "max_pool_3x3")]
    for search in (0, 1):
        _cache(tmp_path / "r", f"{label}-block_search_uniform_search-{search}",
               {"blocks": {"ops": networks[0]}})
        _cache(tmp_path / "r", f"{label}-uniform_rank-{search}", {"ranking": [
            {"block_ops": ops, "oneshot_top1": 0.8 - 0.01 * j, "ops": 490000 + j}
            for j, ops in enumerate(networks)]})
    units = runs.stages()["uniform_topk"]()
    assert [unit.key for unit in units] == [
        *(f"{label}-uniform_rank-{search}" for search in (0, 1)),
        *(f"{label}-uniform_topk-{search}-{j}_seed-{ablations.SELECTION_SEED}"
          for search in (0, 1) for j in range(top)),
        *(f"{label}-uniform_topk-net-{search}_seed-{seed}" for seed in (0, 1)
          for search in (0, 1))]
    # Each ranking is the search's own draw: its seed (0 left out of the spec), 100 networks.
    assert units[0].spec() == {"tool": "rank_blocks", "candidates": 100,
                               "search": f"{label}-block_search_uniform_search-0"}
    assert units[1].spec() == {"tool": "rank_blocks", "candidates": 100, "seed": 1,
                               "search": f"{label}-block_search_uniform_search-1"}
    config = lambda unit: config_lib.load(  # noqa: E731
        "train", [protocol.ROOT / runs.exp.budget.train_config], _sets(unit))
    # The selection runs: the one-shot top `top` (not the fifth), each with the selection seed.
    for index, unit in enumerate(units[2:2 + 2 * top]):
        loaded = config(unit)
        assert loaded["seed"] == ablations.SELECTION_SEED
        assert loaded["baselines"]["quicknet"]["ops"] == networks[index % top]
    # Search 0: the third is the best on validation; search 1: a tie between the second and
    # the fourth goes to the second (the better one-shot rank), and a diverged run (None) is
    # never picked.
    vals = {0: (0.85, 0.86, 0.87, 0.84), 1: (None, 0.88, 0.80, 0.88)}
    for search, values in vals.items():
        for j, value in enumerate(values):
            _cache(tmp_path / "r", f"{label}-uniform_topk-{search}-{j}_seed-"
                   f"{ablations.SELECTION_SEED}", {"val_top1": value})
    assert (runs.uniform_selected(0), runs.uniform_selected(1)) == (2, 1)
    for unit in units[2 + 2 * top:]:
        search, seed = (int(part.split("_")[0]) for part in unit.key.split("-")[-2:])
        loaded = config(unit)
        assert loaded["seed"] == seed
        assert loaded["baselines"]["quicknet"]["ops"] == networks[2 if search == 0 else 1]
    # A pick that is the one-shot best retrains as block_search_uniform_seeds does: reused.
    _cache(tmp_path / "r", f"{label}-uniform_topk-0-0_seed-{ablations.SELECTION_SEED}",
           {"val_top1": 0.9})
    seeds = {unit.key: unit for unit in runs.stages()["block_search_uniform_seeds"]()}
    assert units[2 + 2 * top].spec() == \
        seeds[f"{label}-block_search_uniform-net-0_seed-0"].spec()
    # The listing: search 0's one-shot top 4, the pick (now the first) and its retraining.
    for seed, value in enumerate((0.87, 0.89)):
        _cache(tmp_path / "r", f"{label}-uniform_topk-net-0_seed-{seed}", {"test_top1": value})
    lines = runs._uniform_topk_markdown(18000)
    assert lines[4:6] == [
        "| 0 | 1 (same) | conv_3x3, conv_3x3, conv_3x3, conv_3x3, conv_3x3, conv_3x3 | 80.0% "
        "| 0.490M | 90.00 (pick) | 88.00 |",
        "| 0 | 2 | conv_5x5, conv_5x5, conv_5x5, conv_5x5, conv_5x5, conv_5x5 | 79.0% | "
        "0.490M | 86.00 |  |"]
    assert len(lines) == 4 + 2 * top + 1
