"""The machinery of the resumable experiments (compare.py, ablations.py): budgets, units, stages.

A *unit* is one search or one (network, seed) retraining, run as the documented tools in fresh
processes (tools/search.py, tools/train.py, tools/convert.py = lce_convert) through
`ubnas_tf.pipeline.Runner`, exactly as a user would run them. When a unit finishes, its result
(numbers only: metrics, training curve, genotype, costs) is written as one small JSON file
`<results>/units/<key>.json`, meant to be committed: the experiment grows across sessions and,
after a kill, resumes without redoing finished units (an unfinished unit resumes from its tool's
own checkpoint in the work folder). A cached unit run with other settings is an error, never
silently mixed in.

A *stage* is a named list of units. Each stage is split into parts whose estimated time stays
under `STAGE_LIMIT_S` on the 2-core CPU (`--stage random:2` runs the second part), estimated
from the measured times of finished units of the same kind, or before any has finished from the
step times measured for the README (`Budget.seconds_per_epoch`).
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import pathlib
import platform
import sys
import time
from collections.abc import Callable

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ubnas_tf.errors import UserError  # noqa: E402
from ubnas_tf.io_utils import atomic_write_json  # noqa: E402
from ubnas_tf.pipeline import Runner  # noqa: E402

STAGE_LIMIT_S = 100 * 60  # under two hours per part, with a margin for a busier machine


@dataclasses.dataclass(frozen=True)
class Budget:
    """How big every search and retraining of an experiment is.

    seconds_per_epoch: prior cost of one epoch per unit kind (`search`, or the retrained
        network's kind), used for estimates until units of that kind have been measured;
        overhead_s: process start, evaluation and conversion per unit.
    convert_groups: the groups whose seed-0 runs are also converted (.tflite size).
    selection_flags: tools/derive.py's flags for the perturbation selection (DARTS-PT): probe
        batches per evaluation and weight steps of fine-tuning after each round.
    budget_epochs: the short and the long retraining of the budget check (the protocol's own
        is the train config's `epochs`, between them; one equal to it reuses the protocol's
        seed-0 run).
    """

    name: str
    dataset: str
    search_config: str
    train_config: str
    search_sets: tuple = ()
    train_sets: tuple = ()
    searches: int = 3
    random: int = 8
    seeds: int = 2
    budget_networks: int = 6
    budget_epochs: tuple = (1, 4)
    ops_tolerance: float = 0.10
    convert_args: tuple = ()
    convert_groups: tuple = ("searched", "random", "bireal", "quicknet", "float")
    selection_flags: tuple = ("--batches", "8", "--tune_steps", "10")
    seconds_per_epoch: dict = dataclasses.field(default_factory=dict)
    overhead_s: float = 60.0
    block_search_sets: tuple = ()  # tools/search_blocks.py's overrides (configs/search_blocks.yaml)

    def train_epochs(self) -> int:
        from ubnas_tf import config as config_lib

        return int(config_lib.load("train", [ROOT / self.train_config], self.train_sets)["epochs"])


# Full Fashion-MNIST. Priors: the README's run of experiments/fashion_mnist.py (2026-11-25, this
# 2-core CPU, load 3-8): a 10-epoch search took 1,476 s; 2 epochs on 60,000 images took 1,298 s
# (searched cells, C=8, 4 cells), 387 s (Bi-Real), 630 s (QuickNet), 1,026 s (float twin); here
# 90% of the images train (10% are the validation split).
FULL = Budget(
    name="full", dataset="fashion_mnist_local",
    search_config="configs/search_fashion_mnist.yaml",
    train_config="configs/train_fashion_mnist.yaml",
    seconds_per_epoch={"search": 147.6, "genotype": 0.9 * 649.0, "bireal": 0.9 * 194.0,
                       "quicknet": 0.9 * 315.0, "float": 0.9 * 513.0,
                       # tools/derive.py --batches 8 --tune_steps 10: 1,852 s measured with
                       # four other jobs on the 2 cores (2026-12-06), about half alone
                       "derive": 900.0,
                       # tools/search_blocks.py on 18,000 images: 48-52 s per warm-up epoch,
                       # two searches side by side (2026-12-07)
                       "search_blocks": 75.0,
                       # tools/rank_blocks.py: about 4.5 s per network on the 9,000 images of
                       # the architecture half, one thread (2026-12-07); a few dozen networks
                       "rank_blocks": 300.0},
)

# Seconds per stage on the shipped demo data, for the tests: tiny networks, one epoch.
SMOKE = Budget(
    name="smoke", dataset="demo",
    search_config="configs/search_demo.yaml", train_config="configs/train_demo.yaml",
    search_sets=("epochs=1", "warmup_epochs=0", "regularizers.ramp_epochs=1", "max_examples=64",
                 "batch_size=32", "cells=5", "channels=4", "nodes=2", "multiplier=2",
                 "partial_channels.normal=2", "partial_channels.reduce=2",
                 "partial_channels.min_per_op=1",  # tiny supernet: 2 channels per op
                 "primitives=[skip_connect,avg_pool_3x3,bin_conv_3x3]",
                 "early_stop.patience=null"),
    train_sets=("epochs=1", "max_examples=192", "batch_size=64", "cells=5", "tensorboard=false",
                "saved_model=false"),
    # budget_epochs: the short run is the protocol's own 1-epoch run (reused, not retrained)
    searches=2, random=2, seeds=1, budget_networks=2, budget_epochs=(1, 2),
    convert_args=("--no-verify",), convert_groups=("searched",),  # one conversion path is enough
    selection_flags=("--batches", "1", "--tune_steps", "1"),
    seconds_per_epoch={"search": 20.0, "genotype": 10.0, "bireal": 10.0, "quicknet": 10.0,
                       "float": 10.0, "derive": 10.0, "search_blocks": 10.0,
                       "rank_blocks": 10.0},
    overhead_s=10.0,
    block_search_sets=("epochs=2", "max_examples=128", "batch_size=32"),
)

BUDGETS = {budget.name: budget for budget in (FULL, SMOKE)}


@dataclasses.dataclass
class Unit:
    """One cached result. `kind` groups units of one cost (e.g. `search`, `train:genotype`);
    `epochs` x `scale` (the cost of one epoch against the budget's, e.g. 3 for a search on
    3x the images) scales its estimate; `spec()` says what it runs (checked against a cached
    unit's: it may need an earlier stage's results, so it is called only when needed);
    `run(spec)` does the work and returns the result."""

    key: str
    kind: str
    epochs: int
    spec: Callable
    run: Callable
    scale: float = 1.0


class Experiment:
    """Units cached in `results_dir/units/`, tools' outputs in `work_dir/<key>/`.

    `reuse`: results folders of other experiments whose finished units stand in for one of
    these when the budget and the spec (tool, settings, seed, genotype) are the same: the same
    run, so it is copied (marked `reused_from`), not run again (e.g. the ablations' reference
    row is compare.py's first searches and their retrainings).
    """

    def __init__(self, budget: Budget, results_dir, work_dir, reuse=()):
        self.budget = budget
        self.results_dir = pathlib.Path(results_dir)
        self.work_dir = pathlib.Path(work_dir)
        self.units_dir = self.results_dir / "units"
        self.reuse = [pathlib.Path(folder) for folder in reuse]

    # --- the cache ---------------------------------------------------------------------------

    def cached(self, key: str) -> dict | None:
        path = self.units_dir / f"{key}.json"
        if not path.is_file():
            return None
        unit = json.loads(path.read_text())
        if unit.get("budget") != self.budget.name:
            raise UserError(f"{path} was run with budget {unit.get('budget')!r}, not "
                            f"{self.budget.name!r}: use another --output_dir")
        return unit

    def result(self, key: str) -> dict:
        unit = self.cached(key)
        if unit is None:
            raise UserError(f"unit {key!r} has not run yet: run its stage first "
                            f"({self.units_dir} has no {key}.json)")
        return unit["result"]

    def reused_result(self, key: str) -> dict:
        """The result of unit `key` of a `reuse` folder run with this budget (e.g. compare.py's
        selections, which an ablation's reference row retrains)."""
        for source, unit in self._reuse_units():
            if source.endswith(f"/units/{key}.json") and unit.get("budget") == self.budget.name:
                return unit["result"]
        raise UserError(f"no reuse folder ({', '.join(map(str, self.reuse)) or 'none given'}) "
                        f"holds unit {key!r} of budget {self.budget.name!r}: run its experiment "
                        "first, or pass its results folder with --reuse")

    def configs(self) -> tuple[dict, dict]:
        """The budget's search and retraining configs, with its overrides."""
        from ubnas_tf import config as config_lib

        budget = self.budget
        return (config_lib.load("search", [ROOT / budget.search_config], budget.search_sets),
                config_lib.load("train", [ROOT / budget.train_config], budget.train_sets))

    @functools.cache
    def dataset_info(self):
        """The budget's dataset's info (loaded once: the random draws and baseline sizes of
        many units ask for it)."""
        from ubnas_tf.data import load_dataset

        return load_dataset(self.budget.dataset).info

    def written_once(self, name: str, make) -> dict:
        """A JSON file of the results folder computed the first time it is needed (committed:
        later sessions reuse the same random genotypes and baseline sizes)."""
        from ubnas_tf.io_utils import atomic_write_json

        path = self.results_dir / name
        if not path.is_file():
            atomic_write_json(path, make())
        return json.loads(path.read_text())

    def all_units(self) -> list:
        return [json.loads(p.read_text()) for p in sorted(self.units_dir.glob("*.json"))]

    def reusable(self, spec: dict) -> dict | None:
        """A finished unit of a `reuse` folder run with this budget and `spec`, or None."""
        for source, unit in self._reuse_units():
            if unit.get("budget") == self.budget.name and unit.get("spec") == spec:
                return {**unit, "reused_from": source}
        return None

    @functools.cache
    def _reuse_units(self) -> list:
        """(source, unit) of every unit of the `reuse` folders, read once: estimates ask for
        every unit left before each unit runs. The source is named from the results folder on
        (e.g. compare/units/search-0.json): the same on every clone."""
        return [(f"{folder.name}/units/{path.name}", json.loads(path.read_text()))
                for folder in self.reuse for path in sorted((folder / "units").glob("*.json"))]

    # --- estimates ---------------------------------------------------------------------------

    def seconds_per_epoch(self, kind: str) -> tuple[float, float, str]:
        """(overhead, seconds per epoch, source) of a unit kind: measured wall time per epoch
        of its finished units (overhead included), else the budget's prior."""
        measured = [u["wall_seconds"] / (max(1, u["epochs"]) * u.get("scale", 1.0))
                    for u in self.all_units() if u["kind"] == kind]
        if measured:
            return 0.0, sum(measured) / len(measured), f"measured over {len(measured)} unit(s)"
        prior = self.budget.seconds_per_epoch.get(kind.split(":")[-1], 600.0)
        return self.budget.overhead_s, prior, "prior (README step times)"

    def estimate(self, unit: Unit) -> float:
        """Seconds a unit will take: 0 when a `reuse` folder has the same run."""
        if self.reuse:
            try:
                if self.reusable(unit.spec()):
                    return 0.0
            except UserError:  # its spec needs an earlier unit that has not run yet
                pass
        overhead, rate, _ = self.seconds_per_epoch(unit.kind)
        return overhead + rate * unit.epochs * unit.scale

    def parts(self, units: list) -> list:
        """The units of a stage packed in order into parts estimated under STAGE_LIMIT_S
        (finished units cost nothing)."""
        parts, current, total = [], [], 0.0
        for unit in units:
            seconds = 0.0 if self.cached(unit.key) else self.estimate(unit)
            if current and total + seconds > STAGE_LIMIT_S:
                parts.append(current)
                current, total = [], 0.0
            current.append(unit)
            total += seconds
        return parts + [current] if current else parts

    # --- running -----------------------------------------------------------------------------

    def run_units(self, title: str, units: list) -> None:
        """Run the units not cached yet, with progress and an ETA from measured unit times."""
        for unit in units:
            self.check_spec(unit)
        todo = [u for u in units if self.cached(u.key) is None]
        print(f"\n##### {title}: {len(units)} unit(s), {len(units) - len(todo)} cached, "
              f"{len(todo)} to run (estimated {_duration(sum(map(self.estimate, todo)))})",
              flush=True)
        started = time.monotonic()
        for done, unit in enumerate(todo):
            left = sum(map(self.estimate, todo[done:]))
            _, rate, source = self.seconds_per_epoch(unit.kind)
            print(f"\n##### [{done + 1}/{len(todo)}] {unit.key}  elapsed "
                  f"{_duration(time.monotonic() - started)}, ETA {_duration(left)} "
                  f"({unit.kind}: {rate:.0f} s/epoch, {source})", flush=True)
            unit_started = time.monotonic()
            spec = unit.spec()
            reused = self.reusable(spec)
            if reused:
                print(f"##### {unit.key}: the same run as {reused['reused_from']}, reused",
                      flush=True)
                atomic_write_json(self.units_dir / f"{unit.key}.json", {
                    **reused, "key": unit.key, "kind": unit.kind})
                continue
            result = unit.run(spec)
            atomic_write_json(self.units_dir / f"{unit.key}.json", {
                "key": unit.key, "kind": unit.kind, "budget": self.budget.name,
                "epochs": unit.epochs, **({"scale": unit.scale} if unit.scale != 1 else {}),
                "spec": spec, "result": result,
                "wall_seconds": round(time.monotonic() - unit_started, 1),
                "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"),
                "host": {"machine": platform.machine(), "processor": _cpu_name()},
            })
        print(f"\n##### {title}: done in {_duration(time.monotonic() - started)}", flush=True)

    def check_spec(self, unit: Unit) -> None:
        """A cached unit must have been run with the settings asked for now."""
        cached = self.cached(unit.key)
        if cached is not None and cached["spec"] != unit.spec():
            raise UserError(f"unit {unit.key!r} in {self.units_dir} was run with other settings "
                            f"({cached['spec']} != {unit.spec()}): delete its JSON file to run "
                            "it again, or use another --output_dir")

    def tool(self, title: str, args: list) -> None:
        """One documented tool in a fresh process (pipeline.Runner: same path as the demo)."""
        Runner(1)(title, args)

    # --- the unit kinds -----------------------------------------------------------------------

    def search_unit(self, key: str, seed: int, sets=(), continues: str | None = None) -> Unit:
        """tools/search.py with the budget's config, `seed` and `sets`. `continues`: a finished
        search unit whose folder this one starts from (copied): the search resumes from its
        last checkpoint under `sets`, which may change what resuming allows (e.g. early
        stopping off: a search a rule stopped goes on to its last epoch, the same search as
        one run without the rule, for the epochs before the stop cost nothing new)."""
        from ubnas_tf import config as config_lib

        budget = self.budget
        sets = (*budget.search_sets, f"seed={seed}", *sets)
        config = config_lib.load("search", [ROOT / budget.search_config], sets)
        reference = config_lib.load("search", [ROOT / budget.search_config], budget.search_sets)
        # An epoch's cost follows its images (e.g. the ablations' larger supernet data).
        scale = (config["max_examples"] / reference["max_examples"]
                 if config["max_examples"] and reference["max_examples"] else 1.0)

        def run(spec):
            out = self.work_dir / key
            if continues and not out.exists():
                self._copy_search(continues, out)
            self.tool(f"search {key}", ["search.py", "--dataset", budget.dataset, "--config",
                                        ROOT / budget.search_config, "--output_dir", out,
                                        *set_args(sets)])
            summary = json.loads((out / "summary.json").read_text())
            return {**{k: summary[k] for k in (
                "genotype", "search_seconds", "epochs_run", "epochs_planned", "stop_rule",
                "epochs_saved")}, "curve": _search_curve(out)}

        spec = {"tool": "search", "sets": list(sets), **({"continues": continues} if continues
                                                          else {})}
        return Unit(key, "search", config["epochs"], lambda: spec, run, scale=scale)

    def block_search_unit(self, key: str, seed: int, sets=()) -> Unit:
        """tools/search_blocks.py with the budget's `block_search_sets`, `seed` and `sets`."""
        from ubnas_tf import config as config_lib

        sets = (*self.budget.block_search_sets, f"seed={seed}", *sets)
        config = config_lib.load("search_blocks", [], sets)

        def run(spec):
            out = self.work_dir / key
            self.tool(f"block search {key}", ["search_blocks.py", "--dataset",
                                              self.budget.dataset, "--output_dir", out,
                                              *set_args(sets)])
            summary = json.loads((out / "summary.json").read_text())
            return {**{k: summary[k] for k in ("blocks", "search_seconds", "epochs_run",
                                               "last_change_epoch")},
                    "curve": _search_curve(out, ("blocks", "expected_ops"))}

        return Unit(key, "search_blocks", config["epochs"],
                    lambda: {"tool": "search_blocks", "sets": list(sets)}, run)

    def _search_dir(self, search_key: str, user: str) -> pathlib.Path:
        """The work_dir folder of search unit `search_key`, with its checkpoints, else a
        one-line error naming the fix (`user`: what needs it, e.g. "x continues")."""
        search_dir = self.work_dir / search_key
        if not (search_dir / "checkpoints").is_dir():
            raise UserError(f"{search_dir} holds no checkpoints of {search_key}, which {user}: "
                            f"pass the --work_dir the search ran in, or delete "
                            f"{self.units_dir / (search_key + '.json')} to run the search again")
        return search_dir

    def _copy_search(self, source_key: str, out: pathlib.Path) -> None:
        """A finished search unit's folder copied to `out` (whole, or not at all)."""
        import shutil

        self.result(source_key)  # its unit finished (else: a one-line error naming its stage)
        source = self._search_dir(source_key, f"{out.name} continues")
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial)
        partial.rename(out)

    def derive_unit(self, key: str, search_key: str, sets=()) -> Unit:
        """Derive a finished search unit's genotype again (tools/derive.py; `sets`: its flags,
        e.g. ("--tune_steps", 10)) from the search's checkpoints in this work_dir."""
        def run(spec):
            search_dir = self._search_dir(search_key, f"{key} derives from")
            out = self.work_dir / key
            self.tool(f"derive {key}", ["derive.py", "--search_dir", search_dir,
                                        "--output_dir", out, *spec["flags"]])
            record = json.loads((out / "derivation.json").read_text())
            return {k: record.get(k) for k in (
                "genotype", "method", "epoch", "seconds", "evaluations", "probe_images",
                "tune_steps", "supernet_score", "projected_score", "criterion", "ops_clear")}

        return Unit(key, "derive", 1, lambda: {"tool": "derive", "search": search_key,
                                                "flags": [str(flag) for flag in sets]}, run)

    def rank_unit(self, key: str, search_key: str, *, networks=None,
                  candidates: int | None = None, seed: int = 0) -> Unit:
        """A finished block search's one-shot ranking (tools/rank_blocks.py) of `networks`
        (a callable giving lists of op names), or of `candidates` networks drawn in its OPs
        window from `seed`, from the search's checkpoints in this work_dir."""
        def spec():
            if networks is not None:
                return {"tool": "rank_blocks", "search": search_key, "networks": networks()}
            # Seed 0 is left out of the spec: the units drawn before `seed` existed stay valid.
            return {"tool": "rank_blocks", "search": search_key, "candidates": candidates,
                    **({"seed": seed} if seed else {})}

        def run(spec):
            search_dir = self._search_dir(search_key, f"{key} ranks with")
            out = self.work_dir / key
            if "candidates" in spec:
                args = ["--candidates", spec["candidates"], "--seed", spec.get("seed", 0)]
            else:
                args = ["--networks", _written_networks(out, spec["networks"])]
            self.tool(f"rank {key}", ["rank_blocks.py", "--search_dir", search_dir,
                                      "--output_dir", out, *args])
            record = json.loads((out / "ranking.json").read_text())
            return {k: record[k] for k in ("ranking", "images", "seconds")}

        return Unit(key, "rank_blocks", 1, spec, run)

    def train_unit(self, key: str, kind: str, seed: int, *, genotype=None, model=None,
                   sets=(), late_sets=None, convert: bool = False) -> Unit:
        """Retrain one network: a genotype (dict), a baseline `model` name, or both (`float`).
        `genotype` and `sets` may be callables giving them at run time (they may need an
        earlier stage's results); `late_sets`, a callable, gives sets that follow `sets` (the
        unit's epochs are then still known before it runs). `convert`: also lce_convert it
        (.tflite size)."""
        from ubnas_tf import config as config_lib

        budget = self.budget
        base = (*budget.train_sets, f"seed={seed}")
        static = () if callable(sets) else tuple(sets)
        epochs = config_lib.load("train", [ROOT / budget.train_config], base + static)["epochs"]

        def spec():
            resolved = genotype() if callable(genotype) else genotype
            extra = tuple(sets()) if callable(sets) else static
            if late_sets is not None:
                extra += tuple(late_sets())
            return {"tool": "train", "model": model, "sets": list(base + extra),
                    "genotype": resolved}

        def run(spec):
            out = self.work_dir / key
            args = ["--model", model] if model else []
            if spec["genotype"] is not None:
                from ubnas_tf.search_space.genotype import Genotype

                # Beside the run's folder, not in it: tools/train.py refuses a folder holding
                # a genotype.json as a search's.
                path = self.work_dir / f"{key}.genotype.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                Genotype.from_dict(spec["genotype"]).save(path)
                args += ["--genotype", path]
            try:
                self.tool(f"retrain {key}", ["train.py", *args, "--dataset", budget.dataset,
                                             "--config", ROOT / budget.train_config,
                                             "--output_dir", out, *set_args(spec["sets"])])
            except SystemExit as error:
                if error.code != 1 or not (out / "diverged.json").is_file():
                    raise
                # A run that diverged is a result (e.g. an ablation's structure that cannot
                # train), recorded as such: no metrics, the stage goes on.
                print(f"##### {key} diverged: recorded, the stage goes on", flush=True)
                return {**{k: None for k in METRIC_KEYS}, "curve": [],
                        "diverged": json.loads((out / "diverged.json").read_text())}
            result = _train_result(out)
            if convert:
                self.tool(f"lce_convert {key}", ["convert.py", out / "model.h5", "--dataset",
                                                 budget.dataset, "--report", out / "report.json",
                                                 *budget.convert_args])
                report = json.loads((out / "report.json").read_text())
                result["tflite_bytes"] = report["tflite_bytes"]
            return result

        return Unit(key, f"train:{kind}", epochs, spec, run)


METRIC_KEYS = ("test_top1", "val_top1", "best_val_top1", "best_epoch", "val_size", "test_size",
               "train_size", "params_binary", "params_float", "ops", "float_macs", "binary_macs",
               "model_size_bytes", "train_seconds", "epochs")


def _search_curve(out: pathlib.Path, extra=()) -> list:
    """Per epoch of a search's log: its losses, accuracies and seconds, and the `extra` keys."""
    from ubnas_tf.search.search_log import LOG_NAME, read_log

    keys = ("epoch", "train_loss", "train_acc", "arch_loss", "arch_acc", *extra, "seconds")
    return [{k: record.get(k) for k in keys} for record in read_log(out / LOG_NAME)]


def _train_result(out: pathlib.Path) -> dict:
    """What a retraining leaves that the reports need (missing keys are None: a train tool
    without the validation split has no val_top1)."""
    metrics = json.loads((out / "metrics.json").read_text())
    log = out / "train_log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] \
        if log.is_file() else []
    curve = [{k: v for k, v in r.items() if k in ("epoch", "loss", "top1", "val_loss", "val_top1",
                                                  "seconds")} for r in records]
    return {**{k: metrics.get(k) for k in METRIC_KEYS}, "curve": curve}


def _written_networks(out: pathlib.Path, networks: list) -> pathlib.Path:
    """`networks` as the JSON file tools/rank_blocks.py reads, beside the run's folder."""
    path = out.with_name(out.name + ".networks.json")
    atomic_write_json(path, networks)
    return path


def set_args(sets) -> list:
    """`--set` flags for a tool: ("a=1", "b=2") -> ["--set", "a=1", "--set", "b=2"]."""
    return [arg for text in sets for arg in ("--set", text)]


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# --- stages on the command line --------------------------------------------------------------

def run_stage(experiment: Experiment, stages: dict, choice: str, report: Callable) -> None:
    """`choice`: a stage name (all its parts), `NAME:K` (its K-th part), `NAME@K/N` (its
    units K, K + N, K + 2N, ...: N processes side by side share a stage, whatever is cached),
    `plan` (print every stage's parts and estimates), `report`, or `all`. `stages`: name ->
    callable giving its units (called when needed: a stage may need an earlier stage's
    results)."""
    if choice == "plan":
        print_plan(experiment, stages)
        return
    if choice == "report":
        report()
        return
    names = list(stages) if choice == "all" else [choice.split(":")[0].split("@")[0]]
    for name in names:
        if name not in stages:
            raise UserError(f"unknown stage {choice!r}: use one of plan, {', '.join(stages)}, "
                            "report, all (or NAME:PART, NAME@K/N)")
    for name in names:
        units = stages[name]()
        if "@" in choice:
            index, count = _shard(choice)
            experiment.run_units(f"{name} units {index + 1}, {index + 1 + count}, ... of "
                                 f"{len(units)}", units[index::count])
            continue
        parts = experiment.parts(units)
        if ":" in choice:
            index = _part_index(choice, len(parts))
            experiment.run_units(f"{name} part {index + 1} of {len(parts)}", parts[index])
        else:
            if len(parts) > 1:
                print(f"note: stage {name} is estimated at {len(parts)} parts of under "
                      f"{STAGE_LIMIT_S // 60} min; running them all", flush=True)
            experiment.run_units(name, units)
    if choice == "all":
        report()


def _shard(choice: str) -> tuple[int, int]:
    """(K - 1, N) of `NAME@K/N`."""
    try:
        index, count = (int(v) for v in choice.split("@", 1)[1].split("/"))
    except ValueError:
        index = count = 0
    if not 1 <= index <= count:
        raise UserError(f"stage {choice!r}: write NAME@K/N with 1 <= K <= N, e.g. random@1/2 "
                        "and random@2/2 in two processes")
    return index - 1, count


def _part_index(choice: str, count: int) -> int:
    try:
        index = int(choice.split(":", 1)[1]) - 1
    except ValueError:
        index = -1
    if not 0 <= index < count:
        raise UserError(f"stage {choice!r}: parts are 1..{count} (see --stage plan)")
    return index


def print_plan(experiment: Experiment, stages: dict) -> None:
    total = 0.0
    for name, make_units in stages.items():
        try:
            units = make_units()
        except UserError as error:
            print(f"{name}: waits for an earlier stage ({error})")
            continue
        for index, part in enumerate(experiment.parts(units)):
            todo = [u for u in part if experiment.cached(u.key) is None]
            seconds = sum(map(experiment.estimate, todo))
            total += seconds
            print(f"{name}:{index + 1}  {len(part)} unit(s), {len(todo)} to run, estimated "
                  f"{_duration(seconds)}")
    print(f"total still to run: {_duration(total)} (estimates from measured unit times where "
          "there are any, else from the README's step times)")
