"""Are DARTS-PT's op decisions signal or noise at the probe size we use? Split-half agreement.

    python experiments/pt_reliability.py --stage scores   # every op removed, per batch (resumable)
    python experiments/pt_reliability.py --stage report   # docs/results/pt_reliability/results.md

DARTS-PT (search/perturbation.py) keeps, on each edge, the op whose removal costs the supernet
the most accuracy on a probe: compare.py's `selection` stage used 8 batches of 64 images
(512) of the architecture half. The retrained networks it picked gained 1.0 point over the
alphas' picks, but the winning op's margin over the runner-up was 1-3 images out of 512 on
most edges. This measures whether such margins decide anything:

1. `scores`: for each of compare.py's searches (its checkpoint of the returned epoch, the one
   the selection read), every op of every edge is removed in turn from the unprojected
   supernet (DARTS-PT's first-round scores, all edges at once) and the supernet's correct
   predictions and loss are recorded for each batch of the whole architecture half (or its
   first `--probe_batches`). One unit per search in `<output_dir>/units/`, resumable. Other
   searches: `--search_root` and `--searches` name their folders, e.g. the ablations'
   `--search_root experiments/ablations_run --searches images-18000_search-0`.
2. `report`: two disjoint probes of k batches are drawn many times; on each edge both pick
   their op (accuracy with ties broken by the loss, as DARTS-PT here; or the loss alone), and
   the share of edges where the two agree is the decision's split-half reliability: 1 for a
   decision the data determine, 1/7 (the ops per edge) for a coin toss. Also: how often the
   alphas' argmax is the op the whole half picks. Pooled over the searches, then per search.
"""
from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from absl import flags  # noqa: E402

from ubnas_tf import cli  # noqa: E402
from ubnas_tf.search.perturbation import (CELL_TYPES, CRITERIA, clear_of_noise,  # noqa: E402
                                          hurts_most)

FLAGS = flags.FLAGS
DRAWS = 200  # probe pairs per size: the agreement's standard error stays under 0.01


def define_flags():
    flags.DEFINE_string("stage", "all", "scores | report | all")
    flags.DEFINE_string("search_root", "experiments/compare_run",
                        "The folder holding the search folders (compare.py's work folder).")
    flags.DEFINE_list("searches", ["search-0", "search-1", "search-2"],
                      "The search folders under --search_root to score (one unit each).")
    flags.DEFINE_integer("probe_batches", 0, "Score the first N batches of the architecture "
                         "half (0: all of it); two disjoint probes of k batches need 2k.",
                         lower_bound=0)
    flags.DEFINE_string("output_dir", "docs/results/pt_reliability", "units/, results.md/.json")
    flags.DEFINE_list("sizes", ["4", "8", "16"], "Probe sizes in batches (8: the selection's).")


# --- scores ----------------------------------------------------------------------------------

def removal_scores(probe, architect, progress=None) -> dict:
    """{cell type: [edges, ops, batches, 2]} (correct, loss) per batch with each op of each
    edge removed from the unprojected supernet (DARTS-PT's first round), plus the intact
    supernet's [batches, 2] under `intact` and the op names under `ops`."""
    columns = architect.op_columns
    weights = architect.weights_numpy()
    result = {"ops": [architect.primitives[c] for c in columns],
              "intact": probe.per_batch(weights).tolist()}
    total, done = 2 * architect.edges * len(columns), 0
    for cell_type in CELL_TYPES:
        ops, edges = weights[cell_type]
        table = []
        for edge in range(architect.edges):
            row = []
            for column in columns:
                removed = np.array(ops)
                removed[edge, column] = 0.0
                row.append(probe.per_batch({**weights, cell_type: (removed, edges)}).tolist())
                done += 1
                if progress:
                    progress(done, total)
            table.append(row)
        result[cell_type] = table
    return result


def alpha_choices(architect) -> dict:
    """{cell type: [edges]} the index (among the ops without `none`) of each edge's largest
    alpha: the magnitude rule's op."""
    columns = architect.op_columns
    return {cell_type: np.argmax(np.asarray(ops)[:, columns], axis=1).tolist()
            for cell_type, (ops, _) in architect.weights_numpy().items()}


def score_search(search_dir: pathlib.Path, probe_batches: int = 0, print_fn=print) -> dict:
    from ubnas_tf.search.derive import restore_search
    from ubnas_tf.search.perturbation import Probe

    started = time.time()
    steps, batches, epoch = restore_search(search_dir, batches=probe_batches)
    last = [started]

    def progress(done, total):
        if done == total or time.time() - last[0] > 60:
            last[0] = time.time()
            rate = (last[0] - started) / done
            print_fn(f"  {search_dir.name}: {done}/{total} removals, "
                     f"ETA {(total - done) * rate / 60:.0f} min", flush=True)

    scores = removal_scores(Probe(steps.supernet, batches), steps.architect, progress)
    return {"search_dir": str(search_dir), "epoch": epoch,
            "batch_images": [int(labels.shape[0]) for _, labels in batches],
            "alpha_choice": alpha_choices(steps.architect), "scores": scores,
            "seconds": round(time.time() - started, 1)}


# --- analysis --------------------------------------------------------------------------------

def choices(table: np.ndarray, criterion: str) -> np.ndarray:
    """[edges] the op each edge keeps from totals [edges, ops, 2] (correct, loss), by the
    selection's own rule (`perturbation.hurts_most`: the fewest correct, ties the largest
    loss; or the largest loss)."""
    return np.array([hurts_most(dict(enumerate(map(tuple, edge))), criterion)
                     for edge in table])


def split_half_agreement(scores: np.ndarray, size: int, criterion: str, rng,
                         draws: int = DRAWS) -> float:
    """Mean share of edges on which two disjoint probes of `size` batches pick the same op.
    `scores`: [edges, ops, batches, 2]."""
    batches = scores.shape[2]
    if 2 * size > batches:
        raise ValueError(f"two probes of {size} batches need {2 * size}, there are {batches}")
    agree = []
    for _ in range(draws):
        order = rng.permutation(batches)
        first = choices(scores[:, :, order[:size]].sum(axis=2), criterion)
        second = choices(scores[:, :, order[size:2 * size]].sum(axis=2), criterion)
        agree.append(np.mean(first == second))
    return float(np.mean(agree))


def separated(scores: np.ndarray, criterion: str, z: float = 2.0) -> float:
    """Share of edges whose winner (over every batch) leads the runner-up by more than `z`
    paired standard errors (`perturbation.clear_of_noise`). `scores`: [edges, ops, batches,
    2]."""
    winners = choices(scores.sum(axis=2), criterion)
    return float(np.mean([clear_of_noise(dict(enumerate(scores[edge])), winner, criterion, z)
                          for edge, winner in enumerate(winners)]))


def analyse(units: list, sizes: list, seed: int = 0) -> dict:
    """Per criterion and probe size: split-half agreement over every edge of both cell types
    of every search; and the alphas' agreement with the whole half's accuracy choice."""
    rng = np.random.default_rng(seed)
    tables = [np.asarray(unit["result"]["scores"][cell], np.float64)
              for unit in units for cell in CELL_TYPES]
    ops = len(units[0]["result"]["scores"]["ops"])
    batches = min(t.shape[2] for t in tables)
    sizes = [s for s in sizes if 2 * s <= batches] + [batches // 2]
    images = units[0]["result"]["batch_images"][0]
    agreement = {criterion: {str(size): float(np.mean([
        split_half_agreement(t[:, :, :batches], size, criterion, rng) for t in tables]))
        for size in sizes} for criterion in CRITERIA}
    alphas = [np.mean(np.asarray(unit["result"]["alpha_choice"][cell]) == choices(
        np.asarray(unit["result"]["scores"][cell]).sum(axis=2), "accuracy"))
        for unit in units for cell in CELL_TYPES]
    margins = []
    for table in tables:
        correct = np.sort(table[..., 0].sum(axis=2), axis=1)
        margins += (correct[:, 1] - correct[:, 0]).tolist()
    return {"searches": len(units), "edges": sum(len(t) for t in tables), "ops": ops,
            "chance": 1.0 / ops, "batches": batches, "batch_images": images,
            "agreement": agreement, "alphas_vs_whole_half": float(np.mean(alphas)),
            "separated_whole_half": {criterion: float(np.mean([
                separated(t[:, :, :batches], criterion) for t in tables]))
                for criterion in CRITERIA},
            "whole_half_margin_images": {"median": float(np.median(margins)),
                                         "max": float(np.max(margins))}}


def markdown(result: dict) -> str:
    images = result["batch_images"]
    sizes = list(result["agreement"]["accuracy"])
    lines = [
        f"DARTS-PT's first-round op decisions on {result['searches']} searches "
        f"({result['edges']} edges, {result['ops']} ops each): share of edges on which two "
        f"disjoint probes pick the same op ({DRAWS} probe pairs per size; chance "
        f"{result['chance']:.2f}, fully determined 1.00). `python experiments/pt_reliability.py`.",
        "", "| probe (batches of " + str(images) + ") | images | accuracy (ties: loss) | loss |",
        "|---|---|---|---|"]
    for size in sizes:
        lines.append(f"| {size} | {int(size) * images} | "
                     f"{result['agreement']['accuracy'][size]:.2f} | "
                     f"{result['agreement']['loss'][size]:.2f} |")
    lines += ["", f"The alphas' argmax is the op the whole half ({result['batches'] * images} "
              f"images) picks on {result['alphas_vs_whole_half']:.0%} of the edges; there the "
              f"winner leads the runner-up by {result['whole_half_margin_images']['median']:.0f} "
              f"correct images (median, max {result['whole_half_margin_images']['max']:.0f}). "
              "Edges whose winner leads the runner-up by more than 2 paired standard errors "
              "(per-batch differences) over the whole half: "
              f"{result['separated_whole_half']['accuracy']:.0%} by accuracy, "
              f"{result['separated_whole_half']['loss']:.0%} by loss."]
    lines += per_search_markdown(result.get("per_search", []))
    return "\n".join(lines) + "\n"


def per_search_markdown(rows: list) -> list:
    """Per search: the agreement at the selection's probe (8 batches, or the largest split
    there is), the separated edges and the alphas' match with the whole half."""
    if not rows:
        return []
    lines = ["", "Per search (checkpoint epoch; probe: the selection's 8 batches where the "
             "search has 16 or more, else half of its batches):", "",
             "| search | epoch | probe images | agreement: accuracy / loss | clear of 2 SE: "
             "accuracy / loss | alphas = whole half |", "|---|---|---|---|---|---|"]
    for row in rows:
        sizes = [int(size) for size in row["agreement"]["accuracy"]]
        size = str(8 if 8 in sizes else max(sizes))
        lines.append(
            f"| {row['key']} | {row['epoch']} | {int(size) * row['batch_images']} | "
            f"{row['agreement']['accuracy'][size]:.2f} / {row['agreement']['loss'][size]:.2f} | "
            f"{row['separated_whole_half']['accuracy']:.0%} / "
            f"{row['separated_whole_half']['loss']:.0%} | {row['alphas_vs_whole_half']:.0%} |")
    return lines


# --- stages ----------------------------------------------------------------------------------

def run_scores(output_dir: pathlib.Path, search_root: pathlib.Path, searches: list,
               probe_batches: int = 0) -> None:
    """One unit per search folder; a cached one is kept if it scored `probe_batches` batches
    (0: whatever it scored)."""
    import json

    from ubnas_tf.io_utils import atomic_write_json

    for name in searches:
        path = output_dir / "units" / f"{name}.json"
        if path.is_file():
            scored = len(json.loads(path.read_text())["result"]["batch_images"])
            if probe_batches and scored != probe_batches:
                cli.fail(f"{path} scored {scored} batches, not --probe_batches {probe_batches}: "
                         "use another --output_dir, or delete it to score again")
            print(f"{name}: cached ({path}, {scored} batches)", flush=True)
            continue
        search_dir = search_root / name
        if not (search_dir / "checkpoints").is_dir():
            cli.fail(f"{search_dir} holds no search checkpoints: pass the --search_root and "
                     "--searches of finished searches")
        print(f"{name}: scoring every op removal of {search_dir}", flush=True)
        result = score_search(search_dir, probe_batches)
        atomic_write_json(path, {"key": name, "result": compact(result)})


def compact(result: dict) -> dict:
    """The unit as committed: correct counts as integers, summed losses to 4 decimals (a
    search's table is 2 x 14 x 7 x 46 pairs)."""
    def pairs(values):
        if isinstance(values[0], (int, float)):
            return [int(round(values[0])), round(float(values[1]), 4)]
        return [pairs(v) for v in values]

    scores = result["scores"]
    return {**result, "scores": {key: (value if key == "ops" else pairs(value))
                                 for key, value in scores.items()}}


def run_report(output_dir: pathlib.Path, sizes: list) -> dict:
    import json

    from ubnas_tf.io_utils import atomic_write_json, atomic_write_text

    units = [json.loads(p.read_text()) for p in sorted((output_dir / "units").glob("*.json"))]
    if not units:
        cli.fail(f"{output_dir / 'units'} holds no scores yet: run --stage scores first")
    result = {**analyse(units, sizes),
              "per_search": [{"key": unit["key"], "epoch": unit["result"]["epoch"],
                              **analyse([unit], sizes)} for unit in units]}
    atomic_write_json(output_dir / "results.json", result)
    text = markdown(result)
    atomic_write_text(output_dir / "results.md", text)
    print(text, flush=True)
    return result


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected argument(s) {' '.join(argv[1:])}: options start with --")
    if FLAGS.stage not in ("scores", "report", "all"):
        cli.fail(f"--stage {FLAGS.stage!r} is not one of scores, report, all")
    try:
        sizes = sorted({int(size) for size in FLAGS.sizes})
    except ValueError:
        cli.fail(f"--sizes takes integers separated by commas, got {','.join(FLAGS.sizes)}")
    output_dir = pathlib.Path(FLAGS.output_dir)
    if FLAGS.stage in ("scores", "all"):
        run_scores(output_dir, pathlib.Path(FLAGS.search_root), FLAGS.searches,
                   FLAGS.probe_batches)
    if FLAGS.stage in ("report", "all"):
        run_report(output_dir, sizes)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
