"""OPs-aware search on the shipped dataset: do budgets move the derived network's OPs?

    python experiments/ops_budget.py [--output_dir experiments/ops_budget_run]

1. An unconstrained search (configs/search_demo.yaml on `demo`); its genotype's OPs U are
   computed for the network the budget is about (--cells, --channels: the retraining's size).
2. The same search with `ops_budget.target` = factor * U for each --factors (default 0.5, 1.5
   and 2), each in its own folder.
3. results.md / results.json: target, derived OPs, how far off, and whether it moved the
   right way and landed within --tolerance (15%) of the target; beside it the plain argmax
   derivation's OPs and the expected OPs at the end (what the penalty alone achieved). A
   target outside the OPs any genotype of the space can have at that size is reported as out
   of reach, not run.

Each search is `tools/search.py` in a fresh process, as a user runs it (and resumes it).
"""
import json
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from absl import flags  # noqa: E402

from ubnas_tf import cli  # noqa: E402

flags.DEFINE_string("output_dir", "experiments/ops_budget_run", "Folder for the searches.")
flags.DEFINE_string("dataset", "demo", "Dataset of the searches.")
flags.DEFINE_string("config", "configs/search_demo.yaml", "Search config.")
flags.DEFINE_integer("cells", 5, "Cells of the network the budget is for (5 or more).")
flags.DEFINE_integer("channels", 16, "Channels C of the network the budget is for.")
flags.DEFINE_list("factors", ["0.5", "1.5", "2"],
                  "Budgets as multiples of the unconstrained OPs.")
flags.DEFINE_float("tolerance", 0.15, "Allowed relative distance to the target.")
flags.DEFINE_float("strength", 1.0, "ops_budget.strength.")
FLAGS = flags.FLAGS
ROOT = pathlib.Path(__file__).resolve().parent.parent


def _search(folder: pathlib.Path, sets: list) -> dict:
    args = [sys.executable, "tools/search.py", "--dataset", FLAGS.dataset, "--config",
            FLAGS.config, "--output_dir", str(folder)]
    args += [arg for text in sets for arg in ("--set", text)]
    print("$ " + " ".join(args[1:]), flush=True)
    if subprocess.run(args, cwd=ROOT).returncode:
        raise SystemExit(f"error: the search in {folder} failed")
    return json.loads((folder / "summary.json").read_text())


def _cost_model(info):
    from ubnas_tf import config as config_lib
    from ubnas_tf.search.ops_budget import cost_model_from_config

    config = config_lib.load("search", [FLAGS.config], [
        f"ops_budget.cells={FLAGS.cells}", f"ops_budget.channels={FLAGS.channels}"])
    return cost_model_from_config(config, info)


def main(argv):
    del argv
    from ubnas_tf.data import load_dataset
    from ubnas_tf.search_space.genotype import Genotype
    from ubnas_tf.io_utils import atomic_write_json, atomic_write_text

    out = pathlib.Path(FLAGS.output_dir)
    info = load_dataset(FLAGS.dataset).info
    model = _cost_model(info)
    low, high = model.range()
    _search(out / "unconstrained", [])
    base = model.genotype_ops(Genotype.load(out / "unconstrained" / "genotype.json"))
    print(f"unconstrained: {base:,.0f} OPs at cells={FLAGS.cells}, channels={FLAGS.channels} "
          f"(reachable: {low:,.0f} to {high:,.0f})", flush=True)
    rows = []
    for factor in map(float, FLAGS.factors):
        target = factor * base
        row = {"factor": factor, "target": round(target), "reachable": low <= target <= high}
        if row["reachable"]:
            summary = _search(out / f"budget_x{factor:g}", [
                f"ops_budget.target={target:.0f}", f"ops_budget.cells={FLAGS.cells}",
                f"ops_budget.channels={FLAGS.channels}", f"ops_budget.strength={FLAGS.strength}"])
            ops = summary["ops_budget"]["genotype_ops"]
            last = json.loads((out / f"budget_x{factor:g}" / "search_log.jsonl")
                              .read_text().splitlines()[-1])
            row.update(ops=ops, off_by=round(ops / target - 1, 4),
                       argmax_ops=last["argmax_genotype_ops"],
                       argmax_off_by=round(last["argmax_genotype_ops"] / target - 1, 4),
                       expected_ops=last["expected_ops"],
                       right_direction=(ops - base) * (factor - 1) > 0,
                       within_tolerance=abs(ops / target - 1) <= FLAGS.tolerance,
                       genotype=summary["genotype"])
        rows.append(row)
    table = {"dataset": FLAGS.dataset, "config": FLAGS.config, "cells": FLAGS.cells,
             "channels": FLAGS.channels, "unconstrained_ops": round(base),
             "reachable": [round(low), round(high)], "tolerance": FLAGS.tolerance,
             "strength": FLAGS.strength, "rows": rows}
    lines = [f"Unconstrained search: {base / 1e6:.3f}M OPs (network of {FLAGS.cells} cells, "
             f"C={FLAGS.channels}; genotypes of this space span {low / 1e6:.3f}M to "
             f"{high / 1e6:.3f}M).", "",
             "| budget | target | derived network | off by | moved the right way | within "
             f"{FLAGS.tolerance:.0%} | argmax only (no fitting) | expected OPs |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if not row["reachable"]:
            lines.append(f"| {row['factor']:g}x | {row['target'] / 1e6:.3f}M | out of reach "
                         "(beyond what any genotype costs) | - | - | - | - | - |")
            continue
        lines.append(f"| {row['factor']:g}x | {row['target'] / 1e6:.3f}M | "
                     f"{row['ops'] / 1e6:.3f}M | {100 * row['off_by']:+.1f}% | "
                     f"{'yes' if row['right_direction'] else 'no'} | "
                     f"{'yes' if row['within_tolerance'] else 'no'} | "
                     f"{row['argmax_ops'] / 1e6:.3f}M ({100 * row['argmax_off_by']:+.1f}%) | "
                     f"{row['expected_ops'] / 1e6:.3f}M |")
    atomic_write_json(out / "results.json", table)
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    print("\n" + "\n".join(lines), flush=True)


if __name__ == "__main__":
    cli.run(main)
