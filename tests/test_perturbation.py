"""Genotype selection by perturbation (DARTS-PT) and tools/derive.py.

The selection is checked against a probe whose accuracy is a known linear function of the
architecture weights, so the genotype it must pick is derived by hand, and differs from the
magnitude rule's; the tool against a tiny real search.
"""
import contextlib
import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from ubnas_tf import config as config_lib
from ubnas_tf.errors import UserError
from ubnas_tf.search.architect import Architect
from ubnas_tf.search.derive import checkpoint_epochs, derive, restore_search
from ubnas_tf.search.perturbation import Probe, clear_of_noise, select_by_perturbation
from ubnas_tf.search.run import run_search
from ubnas_tf.search_space.genotype import Genotype

OPS = ("skip_connect", "avg_pool_3x3", "bin_conv_3x3")


def _architect(edge_weights="sigmoid"):
    # nodes=2: node 0 has edges 0, 1 (both kept), node 1 has edges 2, 3, 4 (two kept).
    return Architect(primitives=OPS, nodes=2, multiplier=2, edge_weights=edge_weights,
                     space="binary")


class LinearProbe:
    """accuracy = sum over cells, edges, ops of importance * op weight * edge weight; the loss
    is 1 - accuracy. Removing op o of edge e costs importance[e, o] * w[e, o] * edge[e]."""

    def __init__(self, importance):
        self.importance = importance
        self.calls = 0

    def __call__(self, weights):
        self.calls += 1
        accuracy = sum(float(np.sum(self.importance[cell][0] * ops * edges[:, None]))
                       for cell, (ops, edges) in weights.items())
        return accuracy, 1.0 - accuracy


def test_projection_helpers_give_one_hot_ops_and_zero_edges():
    for form in ("sigmoid", "softmax"):
        architect = _architect(form)
        architect.project_op("reduce", 3, "avg_pool_3x3")
        architect.remove_edge("normal", 4)
        ops = architect.weights_numpy()["reduce"][0]
        np.testing.assert_allclose(ops[3], [0.0, 1.0, 0.0], atol=1e-12)
        edges = architect.weights_numpy()["normal"][1]
        assert edges[4] < 1e-12
        # Node 0's edges carry no beta in the sigmoid form: it always keeps both inputs.
        with pytest.raises(ValueError) if form == "sigmoid" else contextlib.nullcontext():
            architect.remove_edge("normal", 1)


def test_selection_picks_what_the_supernet_needs_not_the_largest_weight():
    architect = _architect()
    # Magnitude would pick bin_conv_3x3 on every edge (largest alpha).
    for cell in ("normal", "reduce"):
        getattr(architect, f"alphas_{cell}").assign(np.tile([0.0, 0.0, 1.0], (5, 1)))
    # Importances: the op whose removal costs most is importance * w (w = softmax row:
    # 0.212, 0.212, 0.576). Normal edge 0: skip 3.0 * 0.212 = 0.64 > conv 1.0 * 0.576;
    # edge 1: conv; edge 2: avg (2.0 * 0.212 = 0.42 > 0.5 * 0.576 = 0.29); edges 3, 4: conv.
    normal = np.array([[3.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.1, 2.0, 0.5],
                       [0.0, 0.1, 0.2], [0.0, 0.0, 5.0]])
    reduce = np.array([[0.0, 0.0, 1.0], [0.0, 4.0, 1.0], [0.0, 0.0, 1.0],
                       [9.0, 0.0, 0.0], [0.0, 0.0, 0.1]])
    probe = LinearProbe({"normal": (normal,), "reduce": (reduce,)})
    magnitude = architect.genotype()
    assert {op for op, _ in magnitude.normal + magnitude.reduce} == {"bin_conv_3x3"}
    rounds = []
    selection = select_by_perturbation(probe, architect, tune=lambda: rounds.append(1))
    # Node 1's edges 2, 3, 4 after projection cost importance[e, chosen] * edge weight
    # (all three start at 2/3): normal 2.0 (edge 2), 0.2 (edge 3), 5.0 (edge 4): keep 4 then
    # 2, i.e. sources 2 and 0; reduce 1.0, 9.0, 0.1: keep edge 3 then 2, sources 1 and 0.
    expected = Genotype(
        normal=(("skip_connect", 0), ("bin_conv_3x3", 1), ("bin_conv_3x3", 2),
                ("avg_pool_3x3", 0)),
        normal_concat=(2, 3),
        reduce=(("bin_conv_3x3", 0), ("avg_pool_3x3", 1), ("skip_connect", 1),
                ("bin_conv_3x3", 0)),
        reduce_concat=(2, 3), space="binary")
    assert selection.genotype == expected
    # 1 + (5 edges x 3 ops x 2 cells) + 1 + (3 edges of node 1 x 2 cells) evaluations; one
    # tuning round per edge index and one for node 1.
    assert selection.evaluations == probe.calls == 1 + 30 + 1 + 6
    assert len(rounds) == 5 + 1
    # The architecture now is the selected genotype: one-hot ops, the dropped edges at zero.
    ops, edges = architect.weights_numpy()["normal"]
    assert ops[0].argmax() == 0 and ops[2].argmax() == 1
    assert edges[3] < 1e-12 and edges[2] > 0.5 and edges[4] > 0.5


def test_ties_in_accuracy_go_to_the_larger_loss():
    architect = _architect()

    def probe(weights):
        ops = weights["normal"][0]
        # Same accuracy whichever op is removed; the loss is highest without avg_pool on
        # every normal edge.
        return 0.5, 1.0 - float(ops[:, 1].sum())

    selection = select_by_perturbation(probe, architect)
    assert [op for op, _ in selection.genotype.normal] == ["avg_pool_3x3"] * 4


def test_a_decision_is_clear_of_noise_when_the_gap_beats_its_batch_spread():
    # correct counts on 4 batches with each op removed; a wins (fewest correct)
    per_batch = {"a": [[40, 1.0], [41, 1.0], [39, 1.0], [40, 1.0]],
                 "b": [[45, 1.0], [45, 1.0], [46, 1.0], [44, 1.0]],
                 "c": [[50, 1.0], [50, 1.0], [50, 1.0], [50, 1.0]]}
    # gaps b - a: 5, 4, 7, 4 -> sum 20, 2 x std 1.41 x sqrt(4) = 5.7
    assert clear_of_noise(per_batch, "a")
    per_batch["b"] = [[45, 1.0], [36, 1.0], [44, 1.0], [36, 1.0]]  # gaps 5, -5, 5, -4: sum 1
    assert not clear_of_noise(per_batch, "a")
    # the loss: the largest loss hurts most
    losses = {"a": [[0, 9.0], [0, 9.5]], "b": [[0, 5.0], [0, 5.2]]}
    assert clear_of_noise(losses, "a", "loss") and not clear_of_noise(losses, "b", "loss")
    assert not clear_of_noise({k: v[:1] for k, v in losses.items()}, "a", "loss")  # 1 batch


def test_the_loss_criterion_follows_the_loss_where_the_accuracy_disagrees():
    architect = _architect()

    def probe(weights):
        ops = weights["normal"][0]
        # Removing skip_connect anywhere costs accuracy, removing bin_conv_3x3 costs loss
        # (a removed op's weight is 0: the smaller the weight kept, the more it cost).
        return float(ops[:, 0].sum()), 5.0 - float(ops[:, 2].sum())

    for criterion, op in (("accuracy", "skip_connect"), ("loss", "bin_conv_3x3")):
        selection = select_by_perturbation(probe, _architect(), criterion=criterion)
        assert [name for name, _ in selection.genotype.normal] == [op] * 4
    with pytest.raises(ValueError, match="criterion"):
        select_by_perturbation(probe, architect, criterion="top5")


# -- a real supernet ---------------------------------------------------------------------------
TINY = ["cells=5", "channels=4", "nodes=2", "multiplier=2", "stem_multiplier=1",
        "batch_size=16", "max_examples=64", "partial_channels.normal=2",
        "partial_channels.reduce=2", "partial_channels.min_per_op=1", "warmup_epochs=0",
        "early_stop.patience=null", "epochs=2",
        "primitives=[skip_connect, avg_pool_3x3, bin_conv_3x3]"]


@pytest.fixture(scope="module")
def tiny_search(tmp_path_factory):
    folder = tmp_path_factory.mktemp("search")
    run_search(config_lib.load("search", overrides=TINY), dataset="demo", output_dir=folder,
               print_fn=lambda *a: None)
    return folder


def test_probe_is_the_supernets_accuracy_and_mean_loss(tiny_search):
    steps, batches, epoch = restore_search(tiny_search, batches=2)
    assert epoch == 2 and len(batches) == 2
    weights = steps.architect.weights_numpy()
    probe = Probe(steps.supernet, batches)
    accuracy, loss = probe(weights)
    per_batch = probe.per_batch(weights)
    expected = []
    for images, labels in batches:
        logits = steps.supernet(images, steps.architect.arch_weights(), training=True).numpy()
        probabilities = tf.nn.softmax(logits).numpy()
        labels = labels.numpy()
        expected.append((int(np.sum(logits.argmax(-1) == labels)),
                         float(-np.sum(np.log(probabilities[np.arange(len(labels)), labels])))))
    expected = np.array(expected)
    np.testing.assert_array_equal(per_batch[:, 0], expected[:, 0])
    np.testing.assert_allclose(per_batch[:, 1], expected[:, 1], rtol=1e-4)
    count = sum(int(labels.shape[0]) for _, labels in batches)
    assert accuracy == pytest.approx(expected[:, 0].sum() / count)
    assert loss == pytest.approx(expected[:, 1].sum() / count, rel=1e-4)


def test_derive_magnitude_gives_the_searchs_genotype(tiny_search, tmp_path):
    record = derive(tiny_search, tmp_path / "m", method="magnitude", print_fn=lambda *a: None)
    assert record["epoch"] == 2 and checkpoint_epochs(tiny_search) == [1, 2]
    assert Genotype.load(tmp_path / "m" / "genotype.json") == \
        Genotype.load(tiny_search / "genotype.json")


def test_derive_perturbation_with_tuning_writes_every_score(tiny_search, tmp_path):
    before = (tiny_search / "genotype.json").read_bytes()
    record = derive(tiny_search, tmp_path / "pt", batches=1, tune_steps=1,
                    print_fn=lambda *a: None)
    saved = json.loads((tmp_path / "pt" / "derivation.json").read_text())
    assert saved["genotype"] == record["genotype"]
    genotype = Genotype.load(tmp_path / "pt" / "genotype.json")
    assert genotype.to_dict() == record["genotype"]
    assert (tmp_path / "pt" / "genotype.png").is_file()
    # 3 ops x 5 edges x 2 cells, 3 edges of node 1 x 2 cells, the supernet and the projection.
    assert saved["evaluations"] == 1 + 30 + 1 + 6 and saved["probe_images"] == 16
    assert len(saved["op_scores"]["normal"]) == 5
    assert set(saved["edge_scores"]["reduce"][1]) == {"0", "1", "2"}
    assert (tiny_search / "genotype.json").read_bytes() == before  # the search untouched
    assert saved["criterion"] == "accuracy"
    # one flag per edge and cell type; one probe batch leaves no spread to judge: never clear
    assert [len(saved["ops_clear"][cell]) for cell in ("normal", "reduce")] == [5, 5]
    assert not any(saved["ops_clear"]["normal"] + saved["ops_clear"]["reduce"])
    by_loss = derive(tiny_search, tmp_path / "pt_loss", batches=1, criterion="loss",
                     print_fn=lambda *a: None)
    assert by_loss["criterion"] == "loss"
    # every op of edge 0 scored alike by both runs (no tuning before the first decision)
    first = {op: tuple(v) for op, v in saved["op_scores"]["normal"][0].items()}
    assert {op: tuple(v) for op, v in by_loss["op_scores"]["normal"][0].items()} == first
    assert by_loss["genotype"]["normal"][0][0] == max(first, key=lambda op: first[op][1])


def test_derive_refusals_name_the_fix(tiny_search, tmp_path):
    with pytest.raises(UserError, match="not a finished search"):
        derive(tmp_path, tmp_path / "out")
    with pytest.raises(UserError, match="keeps 1, 2.*--epoch"):
        derive(tiny_search, tmp_path / "out", epoch=7)
    with pytest.raises(UserError, match="search's own folder"):
        derive(tiny_search, tiny_search)
    assert not (tmp_path / "out").exists()


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    from test_tools_cli import one_error_line, run_as_user

    result = run_as_user([ROOT / "tools" / "derive.py", "--search_dir", tmp_path,
                          "--output_dir", tmp_path / "out"], cwd=tmp_path)
    assert result.returncode == 2
    assert "not a finished search" in one_error_line(result)
    assert not (tmp_path / "out").exists()


def test_search_with_perturbation_selection_returns_the_derived_genotype(tiny_search, tmp_path):
    """selection.method=perturbation: the search's epochs as before, then tools/derive.py's
    genotype on the same checkpoint; a resumed finished run reuses it unless the settings
    changed (selection may change on resume: it only reads the finished supernet)."""
    pt = ["selection.method=perturbation", "selection.batches=1", "selection.tune_steps=1"]
    folder = tmp_path / "search"
    result = run_search(config_lib.load("search", overrides=TINY + pt), dataset="demo",
                        output_dir=folder, print_fn=lambda *a: None)
    derived = derive(tiny_search, tmp_path / "pt", batches=1, tune_steps=1,
                     print_fn=lambda *a: None)
    summary = json.loads((folder / "summary.json").read_text())
    assert result.genotype.to_dict() == derived["genotype"] == summary["genotype"]
    assert Genotype.load(folder / "genotype.json") == result.genotype
    assert summary["selection"]["magnitude_genotype"] == \
        Genotype.load(tiny_search / "genotype.json").to_dict()
    assert summary["selection"]["epoch"] == 2
    assert json.loads((folder / "selection" / "derivation.json").read_text())["op_scores"]

    printed = []
    run_search(config_lib.load("search", overrides=TINY + pt), dataset="demo",
               output_dir=folder, print_fn=printed.append)
    assert any(line.startswith("selection: reusing") for line in printed)
    printed.clear()
    run_search(config_lib.load("search", overrides=TINY + pt + ["selection.tune_steps=0"]),
               dataset="demo", output_dir=folder, print_fn=printed.append)
    assert not any(line.startswith("selection: reusing") for line in printed)
    assert json.loads((folder / "selection" / "derivation.json").read_text())["tune_steps"] == 0


@pytest.mark.parametrize("sets, message", [
    (["selection.method=largest"], "selection.method 'largest' is not known"),
    (["selection.batches=-1"], "selection.batches and tune_steps must be >= 0"),
    (["selection.criterion=top5"], "selection.criterion 'top5' is not known"),
    (["selection.method=perturbation", "ops_budget.target=1000000"], "set one of them only"),
])
def test_selection_config_refusals_name_the_key(tmp_path, sets, message):
    with pytest.raises(UserError, match=message):
        run_search(config_lib.load("search", overrides=TINY + sets), dataset="demo",
                   output_dir=tmp_path / "s", print_fn=lambda *a: None)
    assert not (tmp_path / "s").exists()
