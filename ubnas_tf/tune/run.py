"""Hyperparameter tuning of the whole pipeline with keras-tuner: search, then retraining.

    from ubnas_tf import tune
    from ubnas_tf.tune import space as tune_space
    best = tune.run_tune(tune_space.load_config(["my_tune.yaml"]), dataset="demo",
                         output_dir="runs/tune")

A trial is our own pipeline, not a Keras model: `NASTuner.run_trial` runs
`ubnas_tf.search.run.run_search` and then `ubnas_tf.train.run.run_training` on the derived genotype,
with the trial's values of the tuned keys (PC-DARTS's K per cell type, the architecture
learning rate, the warm-up, the module structure, the retraining's learning rate, or any other
key of configs/search.yaml and configs/train.yaml, as configs/tune.yaml says; see
`ubnas_tf.tune.space`), and reports the retrained network's top-1 on a *validation* set held
out from the training split (`ubnas_tf.tune.data`). keras-tuner (which uses Keras 3) only sees
hyperparameter values and that number: our models stay tf-keras and nothing Keras 3 is built.

Outputs in OUTPUT_DIR: tune_config.yaml, tune_run.json, data/, oracle.json and tuner*.json
(keras-tuner's state), trial_ID/ (keras-tuner's trial.json, our report.json, search/, train/),
trials.json and trials.md (every trial), best.json (`ubnas_tf.tune.reports`). Running the same
command again goes on: keras-tuner reloads its oracle (finished trials are not redone, an
interrupted one is handed out again) and the interrupted trial's search and retraining resume
from their checkpoints.

Distributed mode is keras-tuner's: with KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and
KERASTUNER_ORACLE_PORT set, the process whose id contains "chief" serves the oracle over gRPC
(and writes the reports), every other process is a worker that asks it for trials.
"""
from __future__ import annotations

import copy
import json
import os
import pathlib
import time

import yaml

from ubnas_tf import config as config_lib
from ubnas_tf.errors import UserError
from ubnas_tf.io_utils import atomic_write_json
from ubnas_tf.tune.data import prepare_data
from ubnas_tf.tune.reports import OBJECTIVE, trial_record, write_reports
from ubnas_tf.tune.space import SECTIONS, TuningSpace

__all__ = ["run_tune", "NASTuner", "OBJECTIVE"]

CONFIG_FILE = "tune_config.yaml"
RUN_FILE = "tune_run.json"
# Keys that may change when a run is resumed: more trials, or the same configs from other files.
RESUMABLE_KEYS = ("max_trials", "search_config", "train_config")
_ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


# --- the tuner -------------------------------------------------------------------------------

def _role() -> str:
    """'local', or keras-tuner's distributed 'chief' / 'worker' (from its environment)."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "local"
    missing = [name for name in _ENV if not os.environ.get(name)]
    if missing:
        raise UserError(f"KERASTUNER_ORACLE_IP is set but {', '.join(missing)} is not: set all "
                        f"of {', '.join(_ENV)} for distributed tuning, or none")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def _reporting_oracle(base):
    """`base` (a keras-tuner oracle class) that, as each trial ends, prints a progress line
    and rewrites trials.json, trials.md and best.json. The oracle lives in the local process
    or in the chief, so these files are written where the oracle's state is."""

    class ReportingOracle(base):
        space: TuningSpace = None

        def end_trial(self, trial):
            ran_by = next((tuner for tuner, ongoing in self.ongoing_trials.items()
                           if ongoing.trial_id == trial.trial_id), None)
            super().end_trial(trial)
            ended = self.trials[trial.trial_id]
            directory = pathlib.Path(self._project_dir)
            record = trial_record(ended, directory, ran_by)
            atomic_write_json(directory / f"trial_{ended.trial_id}" / "report.json", record)
            records = write_reports(self, directory, self.space)
            done = len(self.end_order)
            best = records["best"]
            if record["status"] == "COMPLETED":
                outcome = f"{OBJECTIVE} {record['score']:.4f}"
            else:
                reason = (record["message"] or "?").strip().splitlines()[-1][:160]
                outcome = f"{record['status'].lower()}: {reason}"
            best_text = (f"best {best['score']:.4f} (trial {best['trial_id']})" if best
                         else "no best yet")
            seconds = record["metrics"].get("seconds")
            print(f"trial {ended.trial_id} ({done}/{self.max_trials}, {ran_by or '?'}): "
                  f"{outcome}; {best_text}; {self.space.short(ended.hyperparameters.values)}"
                  + (f"; {seconds:.0f} s" if seconds is not None else ""), flush=True)

    ReportingOracle.__name__ = f"Reporting{base.__name__}"
    return ReportingOracle


def _make_oracle(config: dict, space: TuningSpace):
    from keras_tuner import Objective
    from keras_tuner.oracles import (BayesianOptimizationOracle, GridSearchOracle,
                                     RandomSearchOracle)

    base = {"random": RandomSearchOracle, "bayesian": BayesianOptimizationOracle,
            "grid": GridSearchOracle}[config["algorithm"]]
    # keras-tuner takes a seed of 0 as "pick one at random": shift ours by one.
    kwargs = dict(objective=Objective(OBJECTIVE, "max"), max_trials=config["max_trials"],
                  hyperparameters=space.hyperparameters(), allow_new_entries=False,
                  tune_new_entries=True, seed=config["seed"] + 1)
    try:
        oracle = _reporting_oracle(base)(**kwargs)
    except ImportError as error:
        raise UserError(f"algorithm {config['algorithm']} needs a package that is not "
                        f"installed ({error}): pip install scipy, or use algorithm=random") \
            from None
    oracle.space = space
    return oracle


def _make_tuner_class():
    from keras_tuner.engine.base_tuner import BaseTuner
    from keras_tuner.errors import FailedTrialError, FatalError

    class TrialInputError(FatalError):
        """Bad input found inside a trial: keras-tuner lets a FatalError stop the run (any
        other exception only fails the trial), and `run_tune` re-raises it as a UserError."""

    class NASTuner(BaseTuner):
        """keras-tuner's `BaseTuner` whose trial is a search plus a retraining (ours), scored
        by validation top-1; nothing of Keras 3 is built or saved."""

        def __init__(self, oracle, *, space: TuningSpace, data_spec: str, directory,
                     verbose=None):
            directory = pathlib.Path(directory)
            super().__init__(oracle, directory=str(directory.parent),
                             project_name=directory.name, overwrite=False)
            self.space = space
            self.data_spec = data_spec
            self.verbose = verbose
            self.ran: list[str] = []

        def run_trial(self, trial, *args, **kwargs):
            import tensorflow as tf

            from ubnas_tf.search.run import SearchDiverged, run_search
            from ubnas_tf.train.run import run_training
            from ubnas_tf.train.stages import TrainingDiverged

            configs = self.space.configs(trial.hyperparameters.values)
            trial_dir = pathlib.Path(self.get_trial_dir(trial.trial_id))
            print(f"trial {trial.trial_id} on {self.tuner_id}: "
                  f"{self.space.short(trial.hyperparameters.values)} -> {trial_dir}", flush=True)
            tf.keras.backend.clear_session()  # the previous trial's graphs and variables
            self.ran.append(trial.trial_id)
            try:
                search = run_search(configs["search"], dataset=self.data_spec,
                                    output_dir=trial_dir / "search")
                metrics = run_training(configs["train"], dataset=self.data_spec,
                                       output_dir=trial_dir / "train",
                                       genotype=trial_dir / "search" / "genotype.json",
                                       verbose=self.verbose)
            except (SearchDiverged, TrainingDiverged) as error:
                raise FailedTrialError(str(error)) from error
            except UserError as error:
                raise TrialInputError(f"trial {trial.trial_id}: {error}") from None
            return {OBJECTIVE: float(metrics["test_top1"]),
                    "val_loss": float(metrics["test_loss"]),
                    "ops": float(metrics["ops"]),
                    "search_epochs": float(search.epochs_run),
                    "seconds": float(search.seconds + metrics["train_seconds"])}

        InputError = TrialInputError

    return NASTuner


def __getattr__(name):
    if name == "NASTuner":  # built lazily: keras-tuner (and Keras 3) load only when tuning
        return _make_tuner_class()
    raise AttributeError(name)


# --- a whole run -----------------------------------------------------------------------------

def _check_output_dir(directory: pathlib.Path, config: dict, run: dict) -> None:
    saved_path = directory / CONFIG_FILE
    if not saved_path.is_file():
        return
    try:
        saved = yaml.safe_load(saved_path.read_text()) or {}
        saved_run = json.loads((directory / RUN_FILE).read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{directory} holds an unreadable {CONFIG_FILE} or {RUN_FILE} "
                        f"({type(error).__name__}): pass a new --output_dir") from None
    differences = config_lib.same_run(saved, config, ignore=RESUMABLE_KEYS)
    differences += [f"--{key}" for key in sorted(set(run) | set(saved_run))
                    if run.get(key) != saved_run.get(key)]
    if differences:
        raise UserError(f"{directory} holds a tuning run with another config "
                        f"({config_lib.describe_differences(differences)}): "
                        "pass a new --output_dir, or the same command and config to resume it "
                        "(nothing was overwritten)")


def run_tune(config: dict, *, dataset: str, output_dir, data_dir=None, manual_dir=None,
             verbose=None) -> dict | None:
    """Run (or resume) a tuning; see the module docstring. Returns best.json's content (None
    on a distributed worker, whose results the chief records)."""
    if output_dir is None:
        raise UserError("no output folder: pass --output_dir DIR")
    role = _role()
    directory = pathlib.Path(output_dir).resolve()
    run = {"dataset": dataset, "data_dir": data_dir, "manual_dir": manual_dir}
    _check_output_dir(directory, config, run)
    directory.mkdir(parents=True, exist_ok=True)
    data = prepare_data(directory, dataset, validation=config["validation"],
                        max_examples=config["max_examples"], seed=config["seed"],
                        data_dir=data_dir, manual_dir=manual_dir,
                        skip_corrupt=config["search"]["data"]["skip_corrupt"])
    # The copy's reader would pick its own default augmentation: keep the dataset's.
    user_config, config = config, copy.deepcopy(config)
    for section in SECTIONS:
        augment = config[section]["data"]["augment"]
        config[section]["data"]["augment"] = {**data["augment"], **(augment or {})}
    space = TuningSpace(config)
    from ubnas_tf.data import load_dataset

    info = load_dataset(data["spec"], input_size=config["search"]["data"]["input_size"]).info
    space.check(info)
    if not (directory / CONFIG_FILE).is_file():
        atomic_write_json(directory / RUN_FILE, run)
        config_lib.save(user_config, directory / CONFIG_FILE)
    print(f"tuning {len(space.tuned)} keys over {config['max_trials']} trials "
          f"({config['algorithm']}, {role}): {data['train_size']} training / "
          f"{data['validation_size']} validation images of {dataset} -> {directory}", flush=True)

    oracle = _make_oracle(config, space)
    started = time.time()
    tuner = _make_tuner_class()(oracle, space=space, data_spec=data["spec"], directory=directory,
                                verbose=verbose)
    try:
        tuner.search(verbose=0)
    except tuner.InputError as error:
        raise UserError(str(error)) from None
    if role == "worker":
        print(f"worker {tuner.tuner_id} done: ran trial(s) {', '.join(tuner.ran) or 'none'} in "
              f"{time.time() - started:.0f} s", flush=True)
        return None
    reports = write_reports(tuner.oracle, directory, space)
    best = reports["best"]
    if best is None:
        print(f"no trial completed: see {directory / 'trials.md'}", flush=True)
        return None
    summary = json.loads((directory / "best.json").read_text())
    print(f"best: trial {best['trial_id']}, {OBJECTIVE} {best['score']:.4f}; "
          f"{space.short(best['hyperparameters'])}", flush=True)
    print(f"  genotype {best['genotype']}; {len(reports['trials'])} trials -> "
          f"{directory}/best.json, trials.md, trials.json", flush=True)
    return summary
