"""experiments/demo_seeds.py: the demo's spread over seeds, summarised from cached units (the
demo itself runs in tests/test_tools_cli.py; here its tables are given)."""
import json
import math

from conftest import run_tool

from experiments import demo_seeds, protocol


def _unit(seed, searched, bireal):
    rows = [{"network": "searched (binary)", "test_top1": searched, "ops": 5e5 + seed},
            {"network": "bireal (binary)", "test_top1": bireal, "ops": 4.6e5}]
    return {"key": f"demo_seed-{seed}", "kind": "demo", "budget": "demo", "epochs": 1,
            "spec": {"tool": "demo", "sets": [f"seed={seed}"]},
            "result": {"rows": rows, "total_seconds": 600.0 + seed, "genotype": {}},
            "wall_seconds": 600.0, "host": {"machine": "x86_64", "processor": "test CPU"}}


def test_report_gives_every_seed_and_mean_std_per_network(tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    for seed, (searched, bireal) in enumerate([(0.749, 0.696), (0.752, 0.599), (0.767, 0.694)]):
        (units / f"demo_seed-{seed}.json").write_text(json.dumps(_unit(seed, searched, bireal)))
    exp = protocol.Experiment(demo_seeds.DEMO, tmp_path, tmp_path / "work")
    rows = demo_seeds.report(exp)["rows"]
    assert [row["network"] for row in rows] == ["searched (binary)", "bireal (binary)"]
    assert [run["seed"] for run in rows[1]["runs"]] == [0, 1, 2]
    text = (tmp_path / "results.md").read_text()
    mean = (0.696 + 0.599 + 0.694) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in (0.696, 0.599, 0.694)) / 2)
    assert f"{100 * mean:.2f} ± {100 * std:.2f}% (n=3)" in text  # 66.30 ± 5.56%
    assert "| 59.90 - 69.60% |" in text
    assert "0: 74.90%, 1: 75.20%, 2: 76.70%" in text
    assert "600 - 602 s on test CPU" in text


def test_plan_lists_the_seeds_and_bad_seeds_exit_2(tmp_path):
    args = ["experiments/demo_seeds.py", "--output_dir", str(tmp_path), "--work_dir",
            str(tmp_path / "w")]
    plan = run_tool(*args, "--stage", "plan", "--seeds", "0,1,3,3")
    assert plan.returncode == 0, plan.stderr
    assert "demo:1  3 unit(s), 3 to run" in plan.stdout
    for seeds, message in (("a", "integers separated by commas"), ("-1", "seeds >= 0")):
        bad = run_tool(*args, "--stage", "demo", "--seeds", seeds)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
