"""What a tuning reports: one record per trial, trials.json, trials.md and best.json.

Written from the oracle's state (in the local process, or in the chief of a distributed run)
each time a trial ends, and once more at the end of a run.
"""
from __future__ import annotations

import json
import pathlib

from ubnas_tf.io_utils import atomic_write_json, atomic_write_text
from ubnas_tf.tune.space import TuningSpace, format_value

__all__ = ["write_reports", "trial_record", "OBJECTIVE"]

OBJECTIVE = "val_top1"


def trial_record(trial, directory: pathlib.Path, ran_by=None) -> dict:
    """Our record of a keras-tuner trial. keras-tuner forgets which tuner ran a trial once it
    ends, so `ran_by` is known only then; later records take it from that trial's report.json."""
    metrics = {}
    for name in trial.metrics.metrics:
        value = trial.metrics.get_last_value(name)
        if value is not None:
            metrics[name] = float(value)
    trial_dir = directory / f"trial_{trial.trial_id}"
    previous = trial_dir / "report.json"
    if ran_by is None and previous.is_file():
        ran_by = json.loads(previous.read_text()).get("tuner_id")
    return {
        "trial_id": trial.trial_id,
        "status": trial.status,
        "tuner_id": ran_by,
        "score": None if trial.score is None else float(trial.score),
        "hyperparameters": dict(trial.hyperparameters.values),
        "metrics": metrics,
        "genotype": str(trial_dir / "search" / "genotype.json"),
        "search_config": str(trial_dir / "search" / "config.yaml"),
        "train_config": str(trial_dir / "train" / "train_config.yaml"),
        "model": str(trial_dir / "train" / "model.h5"),
        "message": trial.message,
    }


def write_reports(oracle, directory: pathlib.Path, space: TuningSpace) -> dict:
    """trials.json and trials.md (every trial the oracle knows) and best.json; returns
    {"trials": [...], "best": record or None}."""
    records = [trial_record(oracle.trials[trial_id], directory)
               for trial_id in sorted(oracle.trials, key=int)]
    completed = [r for r in records if r["status"] == "COMPLETED" and r["score"] is not None]
    best = max(completed, key=lambda r: (r["score"], -int(r["trial_id"]))) if completed else None
    atomic_write_json(directory / "trials.json", records)
    names = [t.name for t in space.tuned]
    lines = ["| trial | status | tuner | " + " | ".join([OBJECTIVE, *names, "OPs", "seconds"])
             + " |", "|" + "---|" * (len(names) + 6)]
    for record in records:
        metrics = record["metrics"]
        values = [format_value(space.decode(name, record["hyperparameters"].get(name)))
                  for name in names]
        cells = [record["trial_id"] + (" **best**" if record is best else ""),
                 record["status"].lower(), record["tuner_id"] or "",
                 f"{record['score']:.4f}" if record["score"] is not None else "", *values,
                 f"{metrics['ops']:.4g}" if "ops" in metrics else "",
                 f"{metrics['seconds']:.0f}" if "seconds" in metrics else ""]
        lines.append("| " + " | ".join(cells) + " |")
    atomic_write_text(directory / "trials.md", "\n".join(lines) + "\n")
    if best is not None:
        atomic_write_json(directory / "best.json", {
            "objective": OBJECTIVE, "score": best["score"], "trial_id": best["trial_id"],
            "hyperparameters": {name: space.decode(name, value)
                                for name, value in best["hyperparameters"].items()},
            **{key: best[key] for key in ("genotype", "search_config", "train_config", "model",
                                          "metrics")},
            "trials_completed": len(completed), "trials": len(records)})
    return {"trials": records, "best": best}
