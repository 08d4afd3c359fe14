"""Statistics, tables and figures shared by compare.py and ablations.py.

- mean +- sample standard deviation (ddof = 1, as Li & Talwalkar 2019 and Yang et al. 2020
  report over seeds);
- the relative improvement over random sampling of Yang et al. (ICLR 2020):
  RI = 100 * (acc_method - acc_random) / acc_random;
- Kendall's tau-b (ties counted as in scipy.stats.kendalltau), to check that a short retraining
  ranks networks as a longer one does;
- an exact two-sided permutation test of a difference of means (every relabelling of the
  pooled values enumerated), for searched against random networks: the networks, not the
  seeds, are the samples, and with 3 against 8 of them there are only 165 relabellings;
- the seed noise: one retraining's standard deviation pooled over networks (the one-way
  ANOVA's within-group estimate), what the number of seeds must beat.
"""
from __future__ import annotations

import contextlib
import math
import pathlib

__all__ = ["mean_std", "fmt_mean_std", "relative_improvement", "kendall_tau", "permutation_p",
           "pooled_seed_std", "score", "percent",
           "scatter_runs", "plot_curves"]


def mean_std(values) -> tuple[float, float] | None:
    """(mean, sample std); the std of a single value is 0; None for no values."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def fmt_mean_std(values, scale=100.0, unit="%") -> str:
    stats = mean_std(values)
    if stats is None:
        return "-"
    count = len([v for v in values if v is not None])
    return f"{scale * stats[0]:.2f} ± {scale * stats[1]:.2f}{unit} (n={count})"


def relative_improvement(method: float, random: float) -> tuple[float, float]:
    """(points, percent): method - random in accuracy points, and Yang et al.'s RI."""
    return 100.0 * (method - random), 100.0 * (method - random) / random


def kendall_tau(x, y) -> float:
    """Kendall's tau-b of two equally long sequences (nan when either is constant)."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("kendall_tau needs two sequences of the same length >= 2")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else float("nan")


def permutation_p(first, second) -> float:
    """Two-sided exact permutation p-value of mean(first) - mean(second): the share of the
    splits of the pooled values into groups of the same sizes whose |difference of means| is
    at least the observed one (the observed split included, so p >= 1 / splits)."""
    import itertools

    pooled = [float(v) for v in (*first, *second)]
    if len(first) < 1 or len(second) < 1:
        raise ValueError("permutation_p needs one value or more in each group")
    total, size = sum(pooled), len(first)

    def gap(chosen_sum):
        return abs(chosen_sum / size - (total - chosen_sum) / (len(pooled) - size))

    observed = gap(sum(map(float, first))) - 1e-12  # float slack: the observed split counts
    splits = list(itertools.combinations(pooled, size))
    return sum(gap(sum(split)) >= observed for split in splits) / len(splits)


def pooled_seed_std(by_network: dict) -> tuple[float, int] | None:
    """(std, degrees of freedom) of one run around its network's mean: the squared deviations
    from each network's mean summed over every network with 2 runs or more, over the sum of
    (runs - 1). None when no network has 2 runs."""
    squares = freedom = 0
    for values in by_network.values():
        values = [float(v) for v in values if v is not None]
        if len(values) >= 2:
            mean = sum(values) / len(values)
            squares += sum((v - mean) ** 2 for v in values)
            freedom += len(values) - 1
    return (math.sqrt(squares / freedom), freedom) if freedom else None


def score(result: dict) -> tuple[float | None, str]:
    """What ranks networks and selects budgets: the validation top-1 (final weights), never
    the test split; ('test_top1', ...) only for a train tool without the validation split."""
    if result.get("val_top1") is not None:
        return result["val_top1"], "val_top1"
    return result.get("test_top1"), "test_top1 (no validation split in this run)"


@contextlib.contextmanager
def _figure(path, *, title: str, x_label: str, y_label: str):
    """A matplotlib figure (Agg, no display) yielded for drawing, then labelled and saved."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    try:
        yield axes
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)
        axes.set_title(title)
        axes.grid(True, alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)


def percent(value, digits: int = 2) -> str:
    """A share as percent digits ("84.22"), "-" for a value not there (a run not yet made)."""
    return "-" if value is None else f"{100 * value:.{digits}f}"


def run_text(result: dict, digits: int = 2, suffix: str = "") -> str:
    """A run's test top-1 in percent, or where it diverged (protocol.train_unit records a NaN
    loss as a result without metrics)."""
    if result.get("diverged"):
        return f"diverged (epoch {result['diverged'].get('epoch')})"
    return f"{100 * result['test_top1']:.{digits}f}{suffix}"


def scatter_runs(groups: dict, path, *, title: str, x_label: str = "OPs (FLOPs + BOPs/64)",
                 y_label: str = "test top-1 (%)", log_x: bool = True,
                 count: str = "runs") -> pathlib.Path:
    """Top-1 of every run against its OPs (or another `x_label`), one colour per group
    (`groups`: label -> list of (x, top1)); the group named `random` is drawn first, in grey,
    as a cloud. `count`: what a point is, for the legend."""
    with _figure(path, title=title, x_label=x_label, y_label=y_label) as axes:
        for label in sorted(groups, key=lambda label: label != "random"):
            points = [(x, y) for x, y in groups[label] if x is not None and y is not None]
            if not points:
                continue
            xs, ys = zip(*points)
            style = {"color": "0.6", "alpha": 0.6, "s": 22} if label == "random" else {"s": 36}
            axes.scatter(xs, [100 * y for y in ys], label=f"{label} ({len(points)} {count})",
                         **style)
        if log_x:
            axes.set_xscale("log")
    return pathlib.Path(path)


def plot_curves(curves: dict, path, *, key: str, title: str, y_label: str) -> pathlib.Path:
    """Training curves: `curves` label -> list of per-epoch lists of records (one per run)."""
    import matplotlib.pyplot as plt

    with _figure(path, title=title, x_label="epoch", y_label=y_label) as axes:
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for index, (label, runs) in enumerate(curves.items()):
            for run_index, records in enumerate(runs):
                points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
                if points:
                    xs, ys = zip(*points)
                    axes.plot(xs, ys, marker="o", color=colours[index % len(colours)],
                              alpha=0.8, label=label if run_index == 0 else None)
    return pathlib.Path(path)
