"""When a search updates the architecture, and how strongly its regularizers act: as shares
of the run, so a short search is a scaled EBNAS search.

EBNAS (sscckk/EBNAS train_search.py) trains the weights alone for 25 of its 50 epochs, then
both levels, and ramps its regularizers by r(e) = e / 49, reaching 1 at the last epoch. Counted
in epochs, a 10-epoch search with warmup_epochs=3 had 3/10 of EBNAS's share, and a search of
`epochs <= warmup_epochs` (e.g. `--set epochs=1` with the default 25) derived its genotype from
architecture weights that were never trained (issue 18). Here:

- `warmup` (share of `epochs`, default 0.5 = EBNAS's 25 of 50): the first floor(warmup * epochs)
  epochs are weight steps only;
- `regularizers.ramp` (share of the run, default 1.0): r(e) = min(1, e / (ramp * (epochs - 1)))
  for epoch e = 0..epochs-1, EBNAS's e / 49 at 50 epochs; 0 gives r = 1 throughout.

Shares scale the schedule with the run, not the number of steps: at equal shares a search with
fewer images or epochs makes fewer weight steps before the architecture moves (the start line
of a search prints both counts).

The earlier keys `warmup_epochs` and `regularizers.ramp_epochs` (epochs) stay in the schema,
null by default: when set they win, so a config or a run folder written before the change
means what it meant (`comparable` turns them into shares so an old run still resumes).
"""
from __future__ import annotations

import math

from ubnas_tf.errors import UserError

__all__ = ["warmup_epochs", "ramp_end", "ramp_value", "check_schedule", "comparable_schedule"]

_ROUNDING = 1e-9  # 0.29 * 100 is 28.999999999999996 in floats: a share meant 29 epochs


def warmup_epochs(config: dict) -> int:
    """Epochs of weight steps only: `warmup_epochs` if set, else floor(warmup * epochs)."""
    if config["warmup_epochs"] is not None:
        return int(config["warmup_epochs"])
    return int(math.floor(config["warmup"] * config["epochs"] + _ROUNDING))


def ramp_end(config: dict) -> float:
    """R of r(e) = min(1, e / R): `regularizers.ramp_epochs` if set, else ramp * (epochs-1)."""
    regularizers = config["regularizers"]
    if regularizers["ramp_epochs"] is not None:
        return float(regularizers["ramp_epochs"])
    return regularizers["ramp"] * (config["epochs"] - 1)


def ramp_value(epoch: int, end: float) -> float:
    """EBNAS's linear ramp r(e) = e / R, in [0, 1] (R <= 0: always 1)."""
    if end <= 0:
        return 1.0
    return min(1.0, max(0.0, epoch / end))


def check_schedule(config: dict) -> None:
    """Ranges, and that the architecture is searched at all (UserError naming the fix)."""
    warmup, legacy = config["warmup"], config["warmup_epochs"]
    if not 0 <= warmup < 1:
        raise UserError(f"config key 'warmup' is a share of the epochs in [0, 1), got {warmup!r}"
                        " (EBNAS: 0.5, its 25 of 50 epochs)")
    if legacy is not None and (isinstance(legacy, bool) or not isinstance(legacy, int)
                               or legacy < 0):
        raise UserError(f"config key 'warmup_epochs' must be null (use warmup) or an integer "
                        f">= 0, got {legacy!r}")
    regularizers = config["regularizers"]
    if regularizers["ramp"] < 0:
        raise UserError("config key 'regularizers.ramp' must be >= 0 (a share of the run)")
    if regularizers["ramp_epochs"] is not None and regularizers["ramp_epochs"] < 0:
        raise UserError("config key 'regularizers.ramp_epochs' must be null (use "
                        "regularizers.ramp) or >= 0")
    if warmup_epochs(config) >= config["epochs"]:
        raise UserError(
            f"warmup_epochs={legacy} >= epochs={config['epochs']}: the architecture would never "
            "be searched and its genotype would be its random start; set warmup_epochs=null "
            f"(warmup={warmup} of the epochs) or epochs above {legacy}")


def comparable_schedule(config: dict) -> dict:
    """`config` with the epoch form of the schedule written as shares (the same run either way),
    for comparing a saved run's config with a new one."""
    config = {**config, "regularizers": dict(config["regularizers"])}
    epochs = config["epochs"]
    if config.get("warmup_epochs") is not None:
        config["warmup"] = config["warmup_epochs"] / epochs
        config["warmup_epochs"] = None
    regularizers = config["regularizers"]
    if regularizers.get("ramp_epochs") is not None:
        end = regularizers["ramp_epochs"]
        regularizers["ramp"] = end / (epochs - 1) if epochs > 1 else float(end > 0)
        regularizers["ramp_epochs"] = None
    return config
