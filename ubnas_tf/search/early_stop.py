"""The early-stopping rules of a search (UBNAS's "early stopping strategy", and its peers').

Checked after every epoch with architecture updates, in this order; the first that fires ends
the search, and may hand back the genotype of an earlier epoch (`Decision.genotype_epoch`):

- `collapse` (`early_stop.max_parameter_free`): a cell's genotype holds at least that share of
  parameter-free ops (`SearchSpace.parameter_free`: skip, pools, none). In the binary space
  every binary conv already holds the identity (x + BN(conv(sign x))), so a collapse shows up
  as pools rather than DARTS's skips (the demo's normal cell: five avg pools and a skip of
  eight). Fires only when an earlier searched epoch was healthy, and returns the last healthy
  epoch's genotype; a search that never was healthy goes on (the alphas may still recover),
  and its summary says it ended collapsed.
- `hessian` (RobustDARTS, Zela et al. ICLR 2020): the mean of the dominant Hessian eigenvalue
  over `window` epochs grew more than `growth` times in `lookback` epochs; returns the genotype
  of the epoch `lookback` epochs back (RobustDARTS's DARTS-ES).
- `ranking` (DARTS+ rule 2, Liang et al. 2019): the ranking of the learnable ops' alphas is the
  same on every edge for `ranking_patience` epochs.
- `patience`: the genotype has not changed for that many epochs.
- `darts_plus` (DARTS+ rule 1): at least `max_skip` skip connections in the normal cell.

The rules read nothing but the per-epoch log records (genotype, exact alphas, eigenvalue), and
a resumed search truncates its log to the epochs its checkpoint holds, so the rules' state is
that of the checkpoint and a resumed run decides as an uninterrupted one. `enabled: false`
turns every rule off (a full run, for comparison).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ubnas_tf.errors import UserError
from ubnas_tf.search_space.genotype import Genotype

__all__ = ["Decision", "EarlyStopping", "check_early_stop", "parameter_free_shares"]

CELL_TYPES = ("normal", "reduce")


@dataclasses.dataclass(frozen=True)
class Decision:
    rule: str            # collapse, hessian, ranking, patience or darts_plus
    message: str         # what fired, with the numbers
    genotype_epoch: int  # the epoch (1-based) whose genotype the search returns


def _positive_int_or_null(value) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool)
                             and value >= 1)


def check_early_stop(config: dict) -> None:
    """Ranges of the early_stop keys, each error naming the key."""
    stop = config["early_stop"]
    for key in ("patience", "max_skip", "ranking_patience"):
        if not _positive_int_or_null(stop[key]):
            raise UserError(f"config key 'early_stop.{key}' must be null or an integer >= 1")
    for cell_type in CELL_TYPES:
        share = stop["max_parameter_free"][cell_type]
        if share is not None and not 0 < share <= 1:
            raise UserError(f"config key 'early_stop.max_parameter_free.{cell_type}' must be "
                            f"null or a share in (0, 1], got {share!r}")
    hessian = stop["hessian"]
    if hessian["growth"] is not None and hessian["growth"] <= 1:
        raise UserError("config key 'early_stop.hessian.growth' must be null or > 1 "
                        "(RobustDARTS: 1/0.75 = 1.33)")
    for key in ("window", "lookback", "batches", "iterations"):
        if not _positive_int_or_null(hessian[key]) or hessian[key] is None:
            raise UserError(f"config key 'early_stop.hessian.{key}' must be an integer >= 1")


def parameter_free_shares(genotype: Genotype, parameter_free) -> dict:
    """{'normal': share, 'reduce': share} of a genotype's ops that have no weights."""
    return {cell_type: sum(op in parameter_free for op, _ in genes) / len(genes)
            for cell_type, genes in (("normal", genotype.normal), ("reduce", genotype.reduce))}


class EarlyStopping:
    """The rules of one search config over its log records (see the module docstring).

    # Arguments
        config: the search config.
        primitives: the alphas' op names, in column order.
        parameter_free: names of the ops without weights (`SearchSpace.parameter_free`).
        searched_epochs: epochs with architecture steps in the run (None: not known).
    """

    def __init__(self, config: dict, primitives, parameter_free, searched_epochs=None):
        self.stop = config["early_stop"]
        self.enabled = bool(self.stop["enabled"])
        self.parameter_free = frozenset(parameter_free)
        self.learnable = [i for i, name in enumerate(primitives) if name not in parameter_free]
        hessian = self.stop["hessian"]
        self.hessian = hessian if hessian["growth"] is not None else None
        # The eigenvalue costs 2 x batches x iterations Hessian-vector products per epoch (and
        # a trace of the double backward pass): not computed in a run whose searched epochs
        # cannot fill the rule's window (`searched_epochs`, None: unknown, computed).
        self.hessian_too_short = (
            self.hessian is not None and searched_epochs is not None
            and searched_epochs < hessian["window"] + hessian["lookback"])

    @property
    def wants_eigenvalue(self) -> bool:
        """Whether the search must compute the Hessian eigenvalue each searched epoch."""
        return self.enabled and self.hessian is not None and not self.hessian_too_short

    # -- per-record facts, also logged -----------------------------------------------------
    def collapsed(self, genotype: Genotype) -> bool:
        limits = self.stop["max_parameter_free"]
        shares = parameter_free_shares(genotype, self.parameter_free)
        return any(limits[c] is not None and shares[c] >= limits[c] - 1e-9 for c in CELL_TYPES)

    def ranking(self, record: dict) -> tuple:
        """Per edge, the learnable ops' columns from the largest alpha to the smallest."""
        ranks = []
        for cell_type in CELL_TYPES:
            alphas = np.asarray(record[f"alphas_{cell_type}"], np.float32)[:, self.learnable]
            ranks.append(np.argsort(-alphas, axis=1, kind="stable").tobytes())
        return tuple(ranks)

    # -- the decision ------------------------------------------------------------------------
    def decide(self, records: list) -> Decision | None:
        """The rule that fires after the last of `records` (one per epoch, in order), or None."""
        if not self.enabled or not records or not records[-1]["arch_updates"]:
            return None
        searched = [r for r in records if r["arch_updates"]]
        for rule in (self._collapse, self._hessian, self._ranking, self._patience,
                     self._darts_plus):
            decision = rule(records, searched)
            if decision is not None:
                return decision
        return None

    def _collapse(self, records, searched):
        current = searched[-1]
        if not self.collapsed(Genotype.from_dict(current["genotype"])):
            return None
        healthy = [r for r in searched[:-1] if not self.collapsed(Genotype.from_dict(r["genotype"]))]
        if not healthy:
            return None
        shares = parameter_free_shares(Genotype.from_dict(current["genotype"]),
                                       self.parameter_free)
        limits = self.stop["max_parameter_free"]
        shown = ", ".join(f"{c} {shares[c]:.2f}" for c in CELL_TYPES)
        shown_limits = ", ".join(f"{c} {limits[c]}" for c in CELL_TYPES)
        return Decision("collapse", f"collapse: parameter-free share of the genotype {shown} "
                        f"(max_parameter_free {shown_limits}); returning epoch "
                        f"{healthy[-1]['epoch']}'s genotype, the last healthy one",
                        healthy[-1]["epoch"])

    def _hessian(self, records, searched):
        if self.hessian is None:
            return None
        points = [(r["epoch"], r["hessian_eigenvalue"]) for r in searched
                  if r.get("hessian_eigenvalue") is not None]
        window, lookback = self.hessian["window"], self.hessian["lookback"]
        if len(points) < window + lookback or points[-1][0] != searched[-1]["epoch"]:
            return None
        values = np.array([value for _, value in points])
        now = values[-window:].mean()
        then = values[-window - lookback:len(values) - lookback].mean()
        if then <= 0 or now <= self.hessian["growth"] * then:
            return None
        epoch = points[-1 - lookback][0]
        return Decision("hessian", f"hessian: mean dominant eigenvalue over {window} epochs grew "
                        f"{now / then:.2f}x in {lookback} epochs ({then:.4g} -> {now:.4g}, growth "
                        f"{self.hessian['growth']}); returning epoch {epoch}'s genotype", epoch)

    def _ranking(self, records, searched):
        limit = self.stop["ranking_patience"]
        if limit is None or not self.learnable:
            return None
        stable = 0
        first = records.index(searched[0])
        # Each searched epoch compared with the epoch before it (the first with the warm-up's
        # last, whose alphas are the starting ones).
        previous = self.ranking(records[first - 1]) if first else None
        for record in searched:
            ranking = self.ranking(record)
            stable = stable + 1 if ranking == previous else 0
            previous = ranking
        if stable < limit:
            return None
        return Decision("ranking", f"ranking: the learnable ops' alphas kept their ranking on "
                        f"every edge for {stable} epochs (ranking_patience {limit})",
                        searched[-1]["epoch"])

    def _patience(self, records, searched):
        limit, stable = self.stop["patience"], searched[-1]["stable_epochs"]
        if limit is None or stable < limit:
            return None
        return Decision("patience", f"patience: genotype unchanged for {stable} epochs "
                        f"(patience {limit})", searched[-1]["epoch"])

    def _darts_plus(self, records, searched):
        limit = self.stop["max_skip"]
        skips = sum(op == "skip_connect" for op, _ in searched[-1]["genotype"]["normal"])
        if limit is None or skips < limit:
            return None
        return Decision("darts_plus", f"darts_plus: {skips} skip connections in the normal cell "
                        f"(max_skip {limit})", searched[-1]["epoch"])
