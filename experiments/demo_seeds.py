"""`make demo` over several seeds: how far its figures move, so nobody reads one as a result.

    python experiments/demo_seeds.py --stage plan      # units left and estimated time
    python experiments/demo_seeds.py --stage demo      # tools/demo.py with --seeds 0,1,2
    python experiments/demo_seeds.py --stage report    # docs/results/demo_seeds/results.md

Each seed is one run of tools/demo.py (what `make demo` runs; seed 0 is `make demo` itself)
with `--set seed=K`, which seeds the search and every retraining. Its table (results.json) is
cached as one unit in `<output_dir>/units/`, so the command resumes after a kill and grows with
`--seeds` (two processes with disjoint `--seeds` share the work; the report takes every unit). The report gives every network's test top-1 over the seeds (mean ± std, min-max,
every run): the spread that one demo run hides.
"""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from absl import flags  # noqa: E402

from experiments import protocol  # noqa: E402
from experiments.report import fmt_mean_std  # noqa: E402
from ubnas_tf import cli  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """Defined when run as a script only: the tests import this module beside ablations.py,
    whose flags share these names."""
    flags.DEFINE_string("stage", "plan", "plan | demo | report | all")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run (seed 0 is `make demo`); two "
                      "processes with disjoint lists share the work.")
    flags.DEFINE_string("output_dir", "docs/results/demo_seeds", "Results: units/, results.md.")
    flags.DEFINE_string("work_dir", "experiments/demo_seeds_run", "Demo outputs (not committed).")

# Prior for the ETA until a unit has run: make demo took 10 min 38 s on the idle 2-core CPU.
DEMO = protocol.Budget(name="demo", dataset="demo", search_config="configs/search_demo.yaml",
                       train_config="configs/train_demo.yaml", seconds_per_epoch={"demo": 640.0},
                       overhead_s=0.0)


def demo_unit(exp: protocol.Experiment, seed: int) -> protocol.Unit:
    def run(spec):
        out = exp.work_dir / f"seed-{seed}"
        exp.tool(f"demo seed {seed}", ["demo.py", "--output_dir", out,
                                       *protocol.set_args(spec["sets"])])
        table = json.loads((out / "results.json").read_text())
        genotype = json.loads((out / "search" / "genotype.json").read_text())
        return {**table, "genotype": genotype}

    return protocol.Unit(f"demo_seed-{seed}", "demo", 1,
                         lambda: {"tool": "demo", "sets": [f"seed={seed}"]}, run)


def summarize(units: list) -> list:
    """One row per network (in the demo's order): its test top-1 and OPs over the seeds."""
    rows = {}
    for unit in sorted(units, key=lambda u: u["key"]):
        seed = int(unit["key"].rsplit("-", 1)[1])
        for row in unit["result"]["rows"]:
            entry = rows.setdefault(row["network"], {"network": row["network"], "runs": []})
            entry["runs"].append({"seed": seed, "test_top1": row["test_top1"], "ops": row["ops"]})
    return list(rows.values())


def markdown(rows: list, units: list) -> str:
    seconds = [u["result"]["total_seconds"] for u in units]
    lines = [f"`make demo` (tools/demo.py) with {len(units)} seeds; `python "
             "experiments/demo_seeds.py`. Test top-1 of each network over the seeds:", "",
             "| network | test top-1 (mean ± std) | min - max | OPs (min - max) | every seed |",
             "|---|---|---|---|---|"]
    for row in rows:
        top1 = [r["test_top1"] for r in row["runs"]]
        ops = [r["ops"] for r in row["runs"]]
        every = ", ".join(f"{r['seed']}: {100 * r['test_top1']:.2f}%" for r in row["runs"])
        lines.append(f"| {row['network']} | {fmt_mean_std(top1)} | {100 * min(top1):.2f} - "
                     f"{100 * max(top1):.2f}% | {min(ops) / 1e6:.2f} - {max(ops) / 1e6:.2f}M | "
                     f"{every} |")
    if seconds:
        lines += ["", f"Each demo run: {min(seconds):.0f} - {max(seconds):.0f} s on "
                  f"{units[0]['host']['processor']}."]
    return "\n".join(lines) + "\n"


def report(exp: protocol.Experiment) -> dict:
    from ubnas_tf.io_utils import atomic_write_json, atomic_write_text

    units = [u for u in exp.all_units() if u["kind"] == "demo"]
    rows = summarize(units)
    atomic_write_json(exp.results_dir / "results.json", {"rows": rows})
    text = markdown(rows, units)
    atomic_write_text(exp.results_dir / "results.md", text)
    print(text, flush=True)
    return {"rows": rows}


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected argument(s) {' '.join(argv[1:])}: options start with --")
    try:
        seeds = sorted({int(seed) for seed in FLAGS.seeds})
    except ValueError:
        cli.fail(f"--seeds takes integers separated by commas, got {','.join(FLAGS.seeds)}")
    if not seeds or seeds[0] < 0:
        cli.fail(f"--seeds needs one or more seeds >= 0, got {','.join(FLAGS.seeds) or 'none'}")
    exp = protocol.Experiment(DEMO, FLAGS.output_dir, FLAGS.work_dir)
    stages = {"demo": lambda: [demo_unit(exp, seed) for seed in seeds]}
    protocol.run_stage(exp, stages, FLAGS.stage, lambda: report(exp))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
