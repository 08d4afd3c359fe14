"""A finished search's genotype derived again from one of its checkpoints, by another rule.

    from ubnas_tf.search.derive import derive
    derive("runs/search", "runs/search_pt", method="perturbation")

Methods: `magnitude`, the search's own rule (`Architect.genotype`: the argmax op of each edge,
the two strongest edges per node), and `perturbation`, DARTS-PT's (search/perturbation.py), on
the search's architecture half: the data the architecture was trained on, never the
training split's validation part or the test split, so the retrained network's model selection
and test figures stay untouched. The checkpoint defaults to the epoch whose genotype the search
returned (an early-stop rule may have rolled back to it). A search with an OPs budget gets
the genotype before the budget's fit. Outputs: genotype.json,
genotype.png and derivation.json (the method, the epoch and, for perturbation, every score).

A search whose config sets `selection.method: perturbation` runs the same derivation when it
ends (`select_after_search`, into its folder's selection/) and returns that genotype.
"""
from __future__ import annotations

import json
import pathlib
import time

import yaml

from ubnas_tf.errors import UserError
from ubnas_tf.io_utils import atomic_write_json
from ubnas_tf.search.config import check_selection
from ubnas_tf.search_space.genotype import Genotype

__all__ = ["SELECTION_DIR", "derive", "select_after_search", "checkpoint_epochs", "restore_search"]

SELECTION_DIR = "selection"  # a search's own selection (config `selection`), in its folder


def checkpoint_epochs(search_dir: pathlib.Path) -> list:
    """The epochs whose checkpoint the search kept (`ckpt-N`)."""
    folder = search_dir / "checkpoints"
    return sorted(int(path.name[len("ckpt-"):-len(".index")])
                  for path in folder.glob("ckpt-*.index")) if folder.is_dir() else []


def _read_search(search_dir: pathlib.Path) -> tuple[dict, str, dict]:
    """(resolved config, dataset, summary) of a finished search, or UserError naming the fix."""
    from ubnas_tf.search.config import saved_config

    missing = [name for name in ("config.yaml", "run.json", "summary.json")
               if not (search_dir / name).is_file()]
    if missing:
        raise UserError(f"{search_dir} is not a finished search (no {', '.join(missing)}): pass "
                        "the --output_dir of a tools/search.py run that has ended")
    try:
        config = saved_config(yaml.safe_load((search_dir / "config.yaml").read_text()) or {})
        dataset = json.loads((search_dir / "run.json").read_text())["dataset"]
        summary = json.loads((search_dir / "summary.json").read_text())
    except (yaml.YAMLError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise UserError(f"{search_dir}: a search file cannot be read ({error}); run the "
                        "search again into a new folder") from None
    return config, dataset, summary


def _choose_epoch(search_dir, summary, epoch) -> int:
    kept = checkpoint_epochs(search_dir)
    wanted = epoch or summary.get("genotype_epoch") or summary.get("epochs_run")
    if wanted not in kept:
        raise UserError(f"{search_dir} keeps no checkpoint of epoch {wanted} (it keeps "
                        f"{', '.join(map(str, kept)) or 'none'}): pass --epoch with one of them")
    return wanted


def _restore(config, info, search_dir, epoch):
    """The search's `SearchSteps` with the state of `epoch`'s checkpoint (supernet,
    architecture and the weights' optimizer, for the fine-tuning)."""
    import tensorflow as tf

    from ubnas_tf.search.build import build_search_steps

    steps = build_search_steps(config, info)
    checkpoint = tf.train.Checkpoint(supernet=steps.supernet, architect=steps.architect,
                                     weight_optimizer=steps.weight_optimizer)
    checkpoint.restore(str(search_dir / "checkpoints" / f"ckpt-{epoch}")).expect_partial() \
        .assert_existing_objects_matched()
    return steps


def _tuner(steps, weight_data, tune_steps: int):
    """`tune()`: `tune_steps` weight steps on the search's weight half (None for 0)."""
    if not tune_steps:
        return None
    batches = iter(weight_data.repeat())

    def tune():
        for _ in range(tune_steps):
            steps.weight_step(*next(batches))

    return tune


def _search_data(config, dataset, data_dir, manual_dir, batches):
    """(info, weight half, probe batches): the search's two halves (same seed and
    max_examples), the probe the first `batches` batches (0: one pass) of the architecture
    half, not augmented."""
    from ubnas_tf.data import load_dataset

    def halves(augment):
        data = load_dataset(dataset, data_dir=data_dir, manual_dir=manual_dir,
                            input_size=config["data"]["input_size"],
                            max_examples=config["max_examples"], seed=config["seed"],
                            augment=augment)
        return data, data.search_splits(config["batch_size"], portion=config["data"]["portion"],
                                        seed=config["seed"])

    plain, (weight_data, arch_data) = halves(None)
    if config["data"]["augment"]:
        _, (weight_data, _) = halves(config["data"]["augment"])  # as the search trained
    per_pass = plain.search_split_sizes(config["data"]["portion"])[1] // config["batch_size"]
    return plain.info, weight_data, list(arch_data.take(batches or per_pass))


def derive(search_dir, output_dir, *, method: str = "perturbation", epoch: int | None = None,
           batches: int = 0, tune_steps: int = 0, criterion: str = "accuracy", data_dir=None,
           manual_dir=None, print_fn=print) -> dict:
    """Derive, write the outputs (module docstring) and return derivation.json's content."""
    check_selection(method, batches, tune_steps, criterion)
    search_dir, output_dir = pathlib.Path(search_dir), pathlib.Path(output_dir)
    if output_dir.resolve() == search_dir.resolve():
        raise UserError("--output_dir is the search's own folder, whose genotype.json it would "
                        "replace: pass another folder")
    config, dataset, summary = _read_search(search_dir)
    epoch = _choose_epoch(search_dir, summary, epoch)
    return _derive_epoch(config, dataset, search_dir, output_dir, epoch, method=method,
                         batches=batches, tune_steps=tune_steps, criterion=criterion,
                         data_dir=data_dir, manual_dir=manual_dir, print_fn=print_fn)


def restore_search(search_dir, *, epoch: int | None = None, batches: int = 0, data_dir=None,
                   manual_dir=None):
    """(steps, probe batches, epoch): a finished search's `SearchSteps` restored from `epoch`'s
    checkpoint (default as `derive`) and the probe batches a selection would read (the first
    `batches` of the architecture half, 0: all), for analyses of the supernet."""
    search_dir = pathlib.Path(search_dir)
    config, dataset, summary = _read_search(search_dir)
    epoch = _choose_epoch(search_dir, summary, epoch)
    info, _, probe_batches = _search_data(config, dataset, data_dir, manual_dir, batches)
    return _restore(config, info, search_dir, epoch), probe_batches, epoch


def select_after_search(search_dir, config: dict, dataset: str, epoch: int, *, data_dir=None,
                        manual_dir=None, print_fn=print) -> tuple[Genotype, dict]:
    """The genotype of the search config's `selection` for a search that has just ended in
    `search_dir`, on `epoch`'s checkpoint (the epoch whose genotype the search returned; the
    last one kept when a rule rolled back further than the checkpoints go). Outputs in
    `search_dir/selection/`; a derivation already there with the same settings is reused (a
    resumed run does not select twice). Returns (genotype, derivation.json's content)."""
    search_dir = pathlib.Path(search_dir)
    selection = config["selection"]
    kept = checkpoint_epochs(search_dir)
    if epoch not in kept:
        print_fn(f"selection: epoch {epoch}'s checkpoint is no longer kept: selecting on the "
                 f"supernet of epoch {kept[-1]}, the last one")
        epoch = kept[-1]
    output_dir = search_dir / SELECTION_DIR
    wanted = {"method": selection["method"], "epoch": epoch, "batches": selection["batches"],
              "tune_steps": selection["tune_steps"], "criterion": selection["criterion"]}
    previous = _read_derivation(output_dir)
    # A derivation saved before `criterion` existed used the accuracy.
    if previous and all(previous.get(key, "accuracy" if key == "criterion" else None) == value
                        for key, value in wanted.items()):
        print_fn(f"selection: reusing {output_dir / 'derivation.json'}")
        record = previous
    else:
        record = _derive_epoch(config, dataset, search_dir, output_dir, **wanted,
                               data_dir=data_dir, manual_dir=manual_dir, print_fn=print_fn)
    return Genotype.from_dict(record["genotype"]), record


def _read_derivation(output_dir: pathlib.Path) -> dict | None:
    try:
        return json.loads((output_dir / "derivation.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _derive_epoch(config, dataset, search_dir, output_dir, epoch, *, method, batches,
                  tune_steps, criterion, data_dir, manual_dir, print_fn) -> dict:
    from ubnas_tf.search.perturbation import Probe, select_by_perturbation
    from ubnas_tf.search_space.visualize import save_genotype_png

    started = time.time()
    info, weight_data, probe_batches = _search_data(config, dataset, data_dir, manual_dir,
                                                    batches)
    steps = _restore(config, info, search_dir, epoch)
    record = {"search_dir": str(search_dir), "dataset": dataset, "method": method,
              "epoch": epoch, "batches": batches, "tune_steps": tune_steps}
    if method == "perturbation":
        record["criterion"] = criterion
    if method == "magnitude":
        genotype = steps.architect.genotype(fit_budget=False)
    else:
        probe = Probe(steps.supernet, probe_batches)
        print_fn(f"perturbation selection ({criterion}) on epoch {epoch}'s supernet, "
                 f"{probe.images} images of the architecture half per evaluation, "
                 f"{tune_steps} weight steps after each round")
        last = [time.time()]

        def progress(done, total):
            if done == total or time.time() - last[0] > 30:
                last[0] = time.time()
                rate = (last[0] - started) / done
                print_fn(f"  {done}/{total} evaluations, ETA {(total - done) * rate:.0f} s",)

        selection = select_by_perturbation(
            probe, steps.architect, tune=_tuner(steps, weight_data, tune_steps),
            progress=progress, criterion=criterion)
        genotype = selection.genotype
        record.update(probe_images=probe.images, **selection.to_dict())
        clear = [flag for flags in selection.ops_clear.values() for flag in flags]
        print_fn(f"op decisions clear of the probe's noise (the op ahead of the runner-up by 2 "
                 f"paired standard errors over the {len(probe_batches)} batches): "
                 f"{sum(clear)} of {len(clear)}" + ("" if sum(clear) > len(clear) // 2 else
                                                    "; the rest are as good as coin tosses "
                                                    "(more --batches, or a better-trained "
                                                    "supernet)"))
    record.update(genotype=genotype.to_dict(), seconds=round(time.time() - started, 1))
    output_dir.mkdir(parents=True, exist_ok=True)
    genotype.save(output_dir / "genotype.json")
    save_genotype_png(genotype, output_dir / "genotype.png",
                      title=f"{dataset}: {method} selection, epoch {epoch}")
    atomic_write_json(output_dir / "derivation.json", record)
    print_fn(f"genotype ({method}, epoch {epoch}) -> {output_dir / 'genotype.json'}")
    return record
