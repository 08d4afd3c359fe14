"""The main job end to end: search -> genotype -> retrain -> evaluate -> convert -> benchmark.

It drives the command-line tools exactly as a user would (each step a fresh process, so the
demo proves the documented path), then gathers their output files into one comparison table:
the searched binary network beside a hand-designed binary baseline and the float network.
The steps run in the caller's working folder, so relative paths mean what the user typed; the
configs and the output folder are checked before the first step, and a step that fails ends
the run with that step's exit code (2: bad input, its one line already on stderr).
"""
import dataclasses
import json
import pathlib
import subprocess
import sys
import time

from ubnas_tf.io_utils import atomic_write_json, atomic_write_text

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"


@dataclasses.dataclass(frozen=True)
class Contender:
    """One network of the comparison: a label and how tools/train.py builds it."""

    label: str
    folder: str
    train_args: tuple


def contenders(genotype: pathlib.Path, baselines) -> list:
    """The searched network, each hand-designed binary baseline, and the searched cells in
    float (the accuracy that binarization gives up)."""
    if isinstance(baselines, str):
        baselines = [baselines]
    # One baseline keeps the demo's folder name `baseline/`; several get their own names.
    folders = ["baseline"] if len(baselines) == 1 else list(baselines)
    return [
        Contender("searched (binary)", "searched", ("--genotype", str(genotype))),
        *(Contender(f"{name} (binary)", folder, ("--model", name))
          for name, folder in zip(baselines, folders)),
        Contender("searched (float)", "float", ("--genotype", str(genotype), "--model", "float")),
    ]


class Runner:
    """Runs the steps in order, printing progress with the elapsed time."""

    def __init__(self, total_steps: int):
        self.total = total_steps
        self.done = 0
        self.start = time.monotonic()

    def __call__(self, title: str, args: list) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.start
        print(f"\n=== [{self.done}/{self.total}] {title}  (t={elapsed:.0f}s)", flush=True)
        command = [sys.executable, str(TOOLS / args[0]), *map(str, args[1:])]
        print("$ python " + " ".join(command[1:]), flush=True)
        result = subprocess.run(command)
        if result.returncode == 2:  # bad input: the tool's one line says what to fix
            raise SystemExit(2)
        if result.returncode != 0:
            print(f"error: step '{title}' failed with exit code {result.returncode}",
                  file=sys.stderr)
            raise SystemExit(1)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.start


def check_inputs(*, output_dir, search_config, train_config, overrides=()) -> None:
    """Raise UserError for a config or an output folder the steps would refuse, before the
    first step (a bad retraining config must not cost a search first)."""
    from ubnas_tf import config
    from ubnas_tf.io_utils import check_writable

    check_writable(output_dir, folder=True, what="--output_dir")
    config.load("search", [search_config], overrides)
    config.load("train", [train_config], overrides)


def run(*, dataset: str, output_dir, search_config, train_config, baselines,
        overrides=(), benchmark_runs: int = 20, plot_title: str | None = None) -> dict:
    """Run the whole path and return (and write) the comparison table; `plot_title`: also
    draw accuracy against OPs (accuracy_vs_ops.png). Relative paths are from the working
    folder; the tools are this checkout's."""
    check_inputs(output_dir=output_dir, search_config=search_config,
                 train_config=train_config, overrides=overrides)
    out = pathlib.Path(output_dir)
    search_dir = out / "search"
    genotype = search_dir / "genotype.json"
    models = contenders(genotype, baselines)
    steps = Runner(1 + 3 * len(models))
    sets = [arg for text in overrides for arg in ("--set", text)]
    steps("search", ["search.py", "--dataset", dataset, "--config", search_config,
                     "--output_dir", search_dir, *sets])
    for model in models:
        steps(f"retrain + evaluate: {model.label}",
              ["train.py", *model.train_args, "--dataset", dataset, "--config",
               train_config, "--output_dir", out / model.folder, *sets])
    for model in models:
        folder = out / model.folder
        steps(f"lce_convert with verification: {model.label}",
              ["convert.py", folder / "model.h5", "--dataset", dataset,
               "--report", folder / "report.json"])
    for model in models:
        folder = out / model.folder
        steps(f"host benchmark: {model.label}",
              ["benchmark.py", folder / "model.tflite", "--runs", benchmark_runs,
               "--json", folder / "benchmark.json"])
    table = collect(out, models)
    search_log = _read_jsonl(search_dir / "search_log.jsonl")
    table["search_seconds"] = sum(entry.get("seconds", 0.0) for entry in search_log)
    table["total_seconds"] = steps.seconds
    atomic_write_json(out / "results.json", table)
    atomic_write_text(out / "results.md", to_markdown(table))
    written = [out / "results.md", out / "results.json", search_dir / "genotype.png"]
    if plot_title:
        from ubnas_tf.search_space.visualize import save_accuracy_vs_ops_png

        written.append(save_accuracy_vs_ops_png(table["rows"], out / "accuracy_vs_ops.png",
                                                title=plot_title))
    print("\n" + to_markdown(table), flush=True)
    print("\nwritten: " + ", ".join(map(str, written)), flush=True)
    return table


def _read_json(path) -> dict:
    return json.loads(pathlib.Path(path).read_text())


def _read_jsonl(path) -> list:
    path = pathlib.Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def collect(out: pathlib.Path, models) -> dict:
    rows = []
    for model in models:
        folder = out / model.folder
        metrics = _read_json(folder / "metrics.json")
        report = _read_json(folder / "report.json")
        latency = _read_json(folder / "benchmark.json")
        rows.append({
            "network": model.label,
            "test_top1": metrics["test_top1"],
            "params_binary": metrics["params_binary"],
            "params_float": metrics["params_float"],
            "ops": metrics["ops"],
            "tflite_bytes": report["tflite_bytes"],
            "latency_ms_median": latency["latency"]["median_ms"],
            "verify_max_abs_diff": report["verify"]["max_abs_diff"],
        })
    return {"rows": rows}


def to_markdown(table: dict) -> str:
    lines = [
        "| network | top-1 | params 1-bit / 32-bit | OPs | .tflite | host latency |",
        "|---|---|---|---|---|---|",
    ]
    for row in table["rows"]:
        lines.append(
            f"| {row['network']} | {100 * row['test_top1']:.2f}% | "
            f"{row['params_binary']:,} / {row['params_float']:,} | {row['ops'] / 1e6:.2f}M | "
            f"{row['tflite_bytes'] / 1024:.1f} KiB | {row['latency_ms_median']:.2f} ms |"
        )
    if "search_seconds" in table:
        lines.append("")
        lines.append(f"Search: {table['search_seconds']:.0f} s; whole run: "
                     f"{table.get('total_seconds', 0):.0f} s. OPs = FLOPs + BOPs/64; latency "
                     "is LCE's reference interpreter on this host (x86), not ARM.")
    return "\n".join(lines) + "\n"
