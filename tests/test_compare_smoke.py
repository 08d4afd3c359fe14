"""experiments/compare.py end to end at the smoke budget (shipped demo data, tiny networks,
one epoch), every stage a fresh process as a user runs it: units are cached and reused (a rerun
trains nothing), a killed stage resumes, random genotypes lie in the OPs window, and the table
and the plot are written. Outputs go to a temporary folder, never to docs/results."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_tool

pytestmark = pytest.mark.slow


def _compare(tmp_path, stage):
    return ["experiments/compare.py", "--budget", "smoke", "--stage", stage,
            "--output_dir", str(tmp_path / "results"), "--work_dir", str(tmp_path / "work")]


def _units(tmp_path):
    folder = tmp_path / "results" / "units"
    return {p.stem: p.read_text() for p in folder.glob("*.json")} if folder.is_dir() else {}


def _ok(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_compare_stages_cache_resume_and_report(tmp_path):
    _ok(run_tool(*_compare(tmp_path, "searches")))
    assert set(_units(tmp_path)) == {"search-0", "search-1"}

    # Kill the `searched` stage once its first unit is cached; the rerun keeps that unit.
    process = subprocess.Popen([sys.executable, *_compare(tmp_path, "searched")], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                               start_new_session=True)
    deadline = time.monotonic() + 600
    while "searched-0_seed-0" not in _units(tmp_path) and time.monotonic() < deadline:
        assert process.poll() is None, "the stage ended before it could be killed"
        time.sleep(1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    first = _units(tmp_path)["searched-0_seed-0"]
    assert "searched-1_seed-0" not in _units(tmp_path)
    out = _ok(run_tool(*_compare(tmp_path, "searched")))
    assert "1 cached, 1 to run" in out
    assert _units(tmp_path)["searched-0_seed-0"] == first

    _ok(run_tool(*_compare(tmp_path, "all")))  # random ... searched_pt, then the report
    before = _units(tmp_path)
    out = _ok(run_tool(*_compare(tmp_path, "all")))
    # Nothing retrained: every stage is all cached and every unit file is untouched.
    assert "=== [" not in out, out  # pipeline.Runner's line before every tool it starts
    assert out.count(", 0 to run") == 7
    assert _units(tmp_path) == before

    results = tmp_path / "results"
    window = json.loads((results / "random_genotypes.json").read_text())
    units = {k: json.loads(v) for k, v in before.items()}
    searched_ops = [units[f"searched-{i}_seed-0"]["result"]["ops"] for i in range(2)]
    assert window["target_ops"] == pytest.approx(sum(searched_ops) / 2)
    for j in range(2):
        ops = units[f"random-{j}_seed-0"]["result"]["ops"]  # the trained network's own count
        assert abs(ops / window["target_ops"] - 1) <= 0.10
        assert units[f"random-{j}_seed-0"]["spec"]["genotype"] == window["genotypes"][j]["genotype"]
    for name in ("bireal", "quicknet"):
        assert abs(units[f"{name}_seed-0"]["result"]["ops"] / window["target_ops"] - 1) <= 0.10
    table = json.loads((results / "results.json").read_text())
    # What the cells hold: the searched genotypes' ops counted by hand, 2 edges per node.
    searched = [units[f"search-{i}"]["result"]["genotype"] for i in range(2)]
    for cell in ("normal", "reduce"):
        by_hand = {}
        for genotype in searched:
            for op, _ in genotype[cell]:
                by_hand[op] = by_hand.get(op, 0) + 0.5
        assert table["cell_composition"]["searched"][cell] == by_hand
        assert sum(table["cell_composition"]["random"][cell].values()) == 4  # nodes=2

    assert [row["group"] for row in table["rows"]] == ["searched", "searched_pt", "random",
                                                        "bireal", "quicknet", "float"]
    assert all(row["runs"] >= 1 for row in table["rows"])
    assert table["rows"][0]["tflite_bytes"][0] > 0
    # Where the OPs go: each run's float and binary MACs, as tools/train.py counted them.
    quicknet = units["quicknet_seed-0"]["result"]
    split = next(row for row in table["rows"] if row["group"] == "quicknet")["ops_split"]
    assert split["float_macs"] == quicknet["float_macs"] > 0
    assert split["binary_ops"] == quicknet["binary_macs"] / 64
    assert split["float_macs"] + split["binary_ops"] == pytest.approx(quicknet["ops"])
    assert next(row for row in table["rows"] if row["group"] == "float")["ops_split"][
        "float_share"] == 1.0
    improvement = table["improvement_over_random"]
    assert set(improvement["network_means"]["searched"]) == {"searched-0", "searched-1"}
    assert 0 < improvement["permutation_p"] <= 1
    assert len(table["budget_check"]["networks"]) == 2
    # DARTS-PT's genotypes: derived from each search's checkpoint, those retrained.
    for i in range(2):
        derived = units[f"derive_pt-{i}"]["result"]
        assert derived["method"] == "perturbation" and derived["evaluations"] > 1
        # which op decisions cleared the probe's noise: one flag per edge of each cell type
        # (the smoke supernet's 2 nodes have 2 + 3 input edges)
        assert {cell: len(flags) for cell, flags in derived["ops_clear"].items()} == {
            "normal": 5, "reduce": 5}
        assert derived["criterion"] == "accuracy"
        assert units[f"searched_pt-{i}_seed-0"]["spec"]["genotype"] == derived["genotype"]
    # A DARTS-PT network's search cost: its search's seconds and its selection's.
    costs = [units[f"search-{i}"]["result"]["search_seconds"] +
             units[f"derive_pt-{i}"]["result"]["seconds"] for i in range(2)]
    assert table["rows"][1]["search_seconds"][0] == pytest.approx(sum(costs) / 2)
    selection = table["selection_over_random"]
    assert set(selection["network_means"]["searched"]) == {"searched_pt-0", "searched_pt-1"}
    paired = table["selection_paired"]  # each search's two rules side by side
    assert [p["search"] for p in paired] == [0, 1]
    assert paired[0]["perturbation"] == units["searched_pt-0_seed-0"]["result"]["test_top1"]
    markdown = (results / "results.md").read_text()
    assert "Improvement over random" in markdown and "Kendall tau" in markdown
    assert "selected by perturbation" in markdown
    assert "What the cells hold" in markdown and "Where the OPs go" in markdown
    assert (results / "accuracy_vs_ops.png").stat().st_size > 10_000
