"""What a search tells its user: the per-epoch log, summary.json and the printed lines.

search_log.jsonl holds one JSON object per epoch (losses, genotype, exact alphas and betas, the
early-stopping facts); it is also the early-stopping rules' memory (search/early_stop.py), so a
resumed run keeps exactly the lines of the epochs its checkpoint holds (`truncate_log`).
"""
from __future__ import annotations

import json
import pathlib

from ubnas_tf.io_utils import atomic_write_text

__all__ = ["LOG_NAME", "read_log", "truncate_log", "write_log", "epoch_line", "build_summary",
           "print_summary"]

LOG_NAME = "search_log.jsonl"


def read_log(path: pathlib.Path) -> list:
    """The log's whole lines (a line cut by a kill is dropped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_log(path: pathlib.Path, completed_epochs: int) -> list:
    """Keep the log lines of the epochs the checkpoint holds (a kill between the log line and
    the checkpoint leaves one line too many; the resumed run writes it again)."""
    records = [r for r in read_log(path) if r.get("epoch", 0) <= completed_epochs]
    if path.is_file():
        write_log(path, records)
    return records


def write_log(path: pathlib.Path, records: list) -> None:
    """Replace the log with `records` (atomically: a kill leaves the old log or the new)."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def epoch_line(record: dict) -> str:
    parts = [f"epoch {record['epoch']}: loss {record['train_loss']:.4f} "
             f"acc {record['train_acc']:.4f}"]
    if record["arch_loss"] is not None:
        parts.append(f"arch loss {record['arch_loss']:.4f} acc {record['arch_acc']:.4f}")
    if record.get("hessian_eigenvalue") is not None:
        parts.append(f"hessian eigenvalue {record['hessian_eigenvalue']:.4g}")
    parts.append(f"{record['seconds']:.1f} s")
    parts.append("genotype changed" if record["genotype_changed"] else
                 f"genotype stable for {record['stable_epochs']} epoch(s)")
    if record.get("collapsed"):
        parts.append("collapsed (too many parameter-free ops)")
    return ", ".join(parts)


def build_summary(*, dataset: str, records: list, epochs_run: int, epochs_planned: int,
                  decision, genotype, channels_per_op: dict, collapsed: bool,
                  seconds: float, invocation_seconds: float) -> dict:
    """summary.json: the run's budget, the rule that stopped it, its genotype."""
    return {
        "dataset": dataset,
        "epochs_run": epochs_run,
        "epochs_planned": epochs_planned,
        "stop_rule": decision.rule if decision else None,
        "stop_reason": decision.message if decision else None,
        "genotype_epoch": decision.genotype_epoch if decision else epochs_run,
        "epochs_saved": max(0, epochs_planned - epochs_run) if decision else 0,
        "search_seconds": round(seconds, 1),
        "this_invocation_seconds": round(invocation_seconds, 1),
        "channels_per_op": channels_per_op,
        "collapsed": collapsed,
        "final": {k: records[-1].get(k) for k in ("train_loss", "train_acc", "arch_loss",
                                                  "arch_acc")} if records else None,
        "genotype": genotype.to_dict(),
    }


def print_summary(summary: dict, output_dir: pathlib.Path, print_fn) -> None:
    genotype = summary["genotype"]
    print_fn("search summary")
    print_fn(f"  epochs run     {summary['epochs_run']} of {summary['epochs_planned']}")
    if summary["stop_rule"]:
        print_fn(f"  early stop     {summary['stop_reason']} ({summary['epochs_saved']} epochs "
                 "saved)")
    if summary["genotype_epoch"] != summary["epochs_run"]:
        print_fn(f"  genotype of    epoch {summary['genotype_epoch']}")
    if "selection" in summary:
        selection = summary["selection"]
        print_fn(f"  selection      {selection['method']} on epoch {selection['epoch']}'s supernet "
                 f"({selection['seconds']:.0f} s; the magnitude rule's genotype is in "
                 "summary.json, every score in selection/derivation.json)")
    if summary["collapsed"]:
        print_fn("  warning        the genotype is collapsed (too many parameter-free ops): "
                 "try more channels per op (partial_channels.per_op) or a longer warm-up")
    print_fn(f"  channels/op    normal cells {summary['channels_per_op']['normal']}, "
             f"reduction cells {summary['channels_per_op']['reduce']}")
    print_fn(f"  search time    {summary['search_seconds']:.1f} s in epochs")
    if summary["final"]:
        final = summary["final"]
        line = f"  last epoch     loss {final['train_loss']} acc {final['train_acc']}"
        if final["arch_loss"] is not None:
            line += f", arch loss {final['arch_loss']} acc {final['arch_acc']}"
        print_fn(line)
    if "ops_budget" in summary:
        budget = summary["ops_budget"]
        print_fn(f"  OPs budget     {budget['genotype_ops']:,} OPs for a target of "
                 f"{budget['target']:,.0f} ({100 * budget['off_by']:+.1f}%)")
    print_fn(f"  normal cell    {genotype['normal']}")
    print_fn(f"  reduction cell {genotype['reduce']}")
    print_fn(f"  outputs        {output_dir}/genotype.json, genotype.png, {LOG_NAME}, "
             "tensorboard/, checkpoints/")
