"""The abstract's claims as ablations, under compare.py's protocol (issue 13.2).

    python experiments/ablations.py --stage plan        # stages, parts, estimated times
    python experiments/ablations.py --stage default     # then sign, module, k, early_stop
    python experiments/ablations.py --stage report      # docs/results/ablations/: table, figures

Every row is `--budget`'s seeds (2; `--seeds N` adds a row's next ones) of search + retraining
(or of retraining only, for the module structures), with mean +- std and every run, reported
whatever the sign. Rows share one reference: `default_*`, the budget's search
(configs/search_fashion_mnist.yaml: ApproxSign, K = 2/2 from its `partial_channels.per_op`,
early stopping on collapse) and retraining (`ebnas_retrain` modules).
- sign: ApproxSign (the reference) against larq's clipped straight-through sign
  (`module.sign: ste`, presets `ebnas_search_ste` / `ebnas_retrain_ste`) in search and
  retraining; final accuracy and training curves (UBNAS claims faster convergence);
- module: the reference search's first genotype retrained under each module preset and a few
  mappings (pre-BN or not, activation, shortcut, weight scaling);
- k: PC-DARTS channel sampling ratio `partial_channels.normal / .reduce`, three settings;
- early_stop: the reference (early stop on) against the same searches run to the end; epochs
  and seconds saved against the retrained accuracy of each genotype;
- supernet: the supernet trained on 3x the images (`max_examples`, split in halves for the
  weights and the architecture as always), so 3x the steps of both kinds at the same epochs,
  warm-up and ramp: does a better-trained supernet rank its ops better (its genotype's
  retrained accuracy; experiments/pt_reliability.py on its checkpoints for the ranking)?
  supernet_pt: the same searches' genotypes selected by perturbation (DARTS-PT,
  `Budget.selection_flags`) and retrained, beside compare.py's selections from the reference
  searches (`derive_pt-K`, retrained with seed K: the same runs as its searched_pt-K_seed-K).
  supernet_random: SUPERNET_RANDOM random networks drawn in the budget's OPs window around the
  mean OPs of those genotypes (which sit below compare.py's random window), every seed each.
  supernet_baselines: QuickNet sized to the same OPs, every seed.
  supernet_nostop: the supernet row's searches continued from their last checkpoints with
  early stopping off (a search no rule stopped is finished already), each retrained.
- transitions: the supernet row's genotypes (alphas) and its random networks retrained with
  QuickNet's float transitions in place of the reduction cells (`reduction: quicknet`): only the
  normal cell differs between them. QuickNet spends most of its OPs on float stem and
  transitions; does a searched normal cell still beat random ones under that template, and
  does the template close the gap to QuickNet?
- supernet_long: the budget check on the supernet row: its alphas genotypes, QuickNet at its
  OPs and its first LONG_RANDOM random networks retrained for the budget's long epochs (4).
- templates: fewer, wider binary ops per cell (TEMPLATES: 2 nodes at C = 12, 3 at C = 10, both
  with a 2C stem) at the supernet row's OPs: TEMPLATE_RANDOM random networks of each, every
  seed, against the row's random networks (4 nodes, C = 8). A template whose random cells beat
  those by far (or reach QuickNet) is the one to search next; no search runs here.
- projection: the supernet row's alphas genotypes and its first 4 random networks retrained
  with a real-valued shortcut on every cell-input projection (`module.projection_shortcut`:
  the mean of each group of input channels, no MACs), as `transitions` does with float
  transitions.
- quicknet_block: the same with QuickNet's block as every binary conv module (`module:
  quicknet`: x + BN(ReLU(Conv_b(sign(x)))), SteSign at 1.25 on activations and weights, sign
  weights clipped at 1.25): is QuickNet's lead its block rather than its topology?
- retrain_module: the supernet row's searches with the retraining module in the supernet
  (`module: ebnas_retrain`: pre-BN, scaled sign weights, PReLU, BN with moving statistics run
  on batch statistics), retrained as the row; against the row's random networks and QuickNet.
- quicknet_search: the supernet row's searches with QuickNet's block in the supernet too
  (`module: quicknet_search`: EBNAS's search module with the ReLU before the BN and SteSign at
  1.25), each genotype retrained with `module: quicknet`; reported beside quicknet_block.
- quicknet_ops: QuickNet's template at the supernet row's OPs (its sized filters and blocks)
  with each block an op of the binary space drawn uniformly (`baselines.quicknet.ops`; the
  binary convs QuickNet's block itself), QUICKNET_OPS_RANDOM networks in the row's OPs window,
  every seed each, against QuickNet: the random baseline of a block-level search, and how far
  other blocks move QuickNet (no search runs here).
- block_search: the block-level search (tools/search_blocks.py: DARTS's bilevel search of one
  op per block of that template, budgeted to the same OPs window) on the supernet row's
  images, search K's blocks retrained with seed K; against the QuickNets of random blocks.
  block_search_gumbel: the same with GDAS's hard Gumbel samples as the supernet's op weights;
  block_search_qsearch: with the block in the supernet as EBNAS searches (`quicknet_search`).
  block_search_budget: the softmax search with ops_budget.strength 50 (1 in the others), so
  that the budget holds E[OPs] in the window during the search. block_search_dilation: the
  softmax search of the dilation sub-space (DILATION_OPS: QuickNet's 3x3 block plain or
  dilated, every network at QuickNet's OPs, QuickNet its all-plain corner; no budget needed);
  dilation_random: DILATION_RANDOM QuickNets of random dilation patterns, every seed each (its
  random baseline); dilation_long: its networks and the first LONG_RANDOM random patterns at
  the long budget (seed 0), as block_search_long. block_search_uniform: SPOS / random search
  with weight sharing (`op_weights: uniform`): the supernet trained on uniformly drawn single
  paths, no architecture steps, the blocks the best of 100 networks drawn in the window by
  one-shot accuracy; uniform_long: its networks and block_search_long's random blocks at the
  long budget, seeds 0 to UNIFORM_LONG_SEEDS - 1 (seed 0's random runs are block_search_long's).
  NAME_seeds: each network a block search NAME found retrained with every seed (network
  means, as the random blocks have); block_search_long: block_search's networks and the first
  LONG_RANDOM QuickNets of random blocks at the long budget (seed 0), beside supernet_long's
  QuickNet.
- oneshot_ranking: each search of ONESHOT_SEARCHES ranks, with its supernet's weights
  (tools/rank_blocks.py), every network of the template retrained with every seed: does it
  rank them as retraining does? rsws: random search with weight sharing, RSWS_CANDIDATES
  networks drawn in the window ranked by each RSWS_SEARCH supernet, its best retrained with
  every seed. uniform_topk: model selection on the validation split among the uniform
  search's one-shot best: each search's ranking run again, its UNIFORM_TOPK best trained once
  with SELECTION_SEED (no reported run's seed), the highest val top-1 retrained with every seed.
- block_search_uniform_narrow: width against depth at the same OPs. The uniform search in
  NARROW_TEMPLATE (widths [12, 24, 48] x 5 blocks a section: less float OPs, so 15 blocks fit
  the window where QuickNet's template fits 6 binary convs), the same window; narrow: its
  hand-designed point (QuickNet's block at all 15 positions) and its random baseline
  (NARROW_RANDOM QuickNets of random blocks in it), every seed each; narrow_long: the
  search's networks, the first LONG_RANDOM random ones and QuickNet's block in that template
  at the long budget, seeds 0 to NARROW_LONG_SEEDS - 1; narrow_oneshot: each narrow
  search's supernet ranks every network retrained in that template (does its one-shot ranking
  disagree with retraining there?).

A row's searches come before its retrainings, so that `--stage NAME@K/N` with N = the seeds
runs one seed's search and retraining per process.
"""
import dataclasses
import functools
import itertools
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from absl import flags  # noqa: E402

from experiments import protocol  # noqa: E402
from experiments.report import (fmt_mean_std, mean_std, percent,  # noqa: E402
                                permutation_p, plot_curves, run_text)
from ubnas_tf import cli  # noqa: E402

flags.DEFINE_string("stage", "plan", "plan | default | sign | module | k | early_stop | "
                    "supernet | supernet_pt | supernet_random | supernet_baselines | "
                    "supernet_nostop | transitions | supernet_long | templates | projection | "
                    "quicknet_block | retrain_module | quicknet_search | quicknet_ops | "
                    "block_search | block_search_gumbel | block_search_qsearch | "
                    "block_search_budget | block_search_dilation | block_search_uniform | "
                    "block_search_uniform_narrow | NAME_seeds of each of those seven | "
                    "dilation_random | block_search_long | dilation_long | uniform_long | "
                    "oneshot_ranking | rsws | uniform_topk | narrow | narrow_long | "
                    "narrow_oneshot | report | all; "
                    "NAME:K runs the K-th part of a stage, NAME@K/N its K-th share of N "
                    "processes.")
flags.DEFINE_enum("budget", "full", sorted(protocol.BUDGETS), "full or smoke (tests).")
flags.DEFINE_string("output_dir", "docs/results/ablations", "Results: units/, results.md, figures.")
flags.DEFINE_string("work_dir", "experiments/ablations_run", "Tools' outputs (not committed).")
flags.DEFINE_list("reuse", ["docs/results/compare"], "Results folders whose finished units "
                  "with the same budget and settings stand in for these (compare.py's searches "
                  "and retrainings are the reference row's); empty to run everything here.")
flags.DEFINE_integer("seeds", None, "Seeds per row (default: the budget's); more add a row's "
                     "next seeds, e.g. --stage supernet --seeds 3 runs seed 2's search and "
                     "retraining beside the finished two.", lower_bound=1)
FLAGS = flags.FLAGS

# label -> (search --set overrides, retraining --set overrides); "default" is the reference.
SIGNS = {"approx": None, "ste": (("module=ebnas_search_ste",), ("module=ebnas_retrain_ste",))}
K_SETTINGS = ((8, 4), (4, 2), (2, 1))  # the two that differ from the reference's are run
SUPERNET_SCALE = 3  # the supernet row's images (and steps) per search, x the reference's
SUPERNET_RANDOM = 8  # random networks at the supernet row's OPs (as compare.py draws at its own;
#                     the first 4 were drawn and trained on 2026-12-06, the record then grown)
SUPERNET_BASELINES = ("quicknet",)  # hand-designed networks sized to the same OPs (issue 14's)
TRANSITIONS = "quicknet"  # the `reduction` of the transitions stage
LONG_RANDOM = 2  # the first random networks of the supernet row, retrained at the long budget
#                 (2 so that the stage fits one session of this CPU; raise it to grow the stage)
UNIFORM_LONG_SEEDS = 2  # uniform_long's seeds (the other long stages: seed 0), as QuickNet's
NARROW_LONG_SEEDS = 3  # narrow_long's (its third seed added 2026-12-08 with QuickNet's third)
# Fewer, wider binary ops per cell at the supernet row's OPs (issue 14): each template's
# random networks against the row's (4 nodes, C = 8, stem 3C). Two nodes at C = 12 give 4
# binary ops per cell that see 12, 24, 48 channels (QuickNet's see 16, 32, 64) where 8 ops
# see 8, 16, 32; a 2C stem keeps the stem's float OPs (24 channels) as they were.
TEMPLATES = {
    "nodes2-c12": {"nodes": 2, "channels": 12, "stem_multiplier": 2},
    "nodes3-c10": {"nodes": 3, "channels": 10, "stem_multiplier": 2},
}
TEMPLATE_RANDOM = 4  # random networks per template, every seed each
QUICKNET_OPS_RANDOM = 8  # QuickNets of random blocks at the supernet row's OPs, every seed each
QUICKNET_OPS_RECORD = "quicknet_ops_random.json"  # their blocks, drawn once
# The ops of the dilation sub-space: QuickNet's 3x3 block plain or dilated, the same OPs, so
# every network of it has QuickNet's OPs (QuickNet is its all-plain corner).
DILATION_OPS = ("bin_conv_3x3", "bin_dil_conv_3x3")
DILATION_RANDOM = 4  # random networks of it, every seed each
DILATION_RECORD = "dilation_random.json"  # their blocks, drawn once
# One-shot evaluation (tools/rank_blocks.py, search/oneshot.py) with each block search's
# supernet: of every network of the template retrained with every seed (written once to
# ONESHOT_RECORD), does the supernet rank them as retraining does? And random search with
# weight sharing (Li & Talwalkar, UAI 2019): RSWS_CANDIDATES networks drawn in the budget's
# window, ranked with each GDAS supernet (block_search_gumbel: single paths trained, as
# RS-WS's supernet is; chosen before any ranking was seen), its best retrained.
ONESHOT_SEARCHES = ("block_search", "block_search_gumbel", "block_search_dilation",
                    "block_search_uniform")
ONESHOT_RECORD = "oneshot_networks.json"
RSWS_SEARCH = "block_search_gumbel"
RSWS_CANDIDATES = 100
# Selection by validation accuracy among the uniform (SPOS) search's one-shot best: each
# search's own ranking again (its draw: the search's seed, its `candidates`), its best
# UNIFORM_TOPK networks each trained once with SELECTION_SEED, a seed no reported run uses (the
# runs reported are not the ones selected on), the highest val_top1 retrained with every seed.
UNIFORM_TOPK = 4
SELECTION_SEED = 100
# Block-level searches in that template and window (tools/search_blocks.py): DARTS's softmax
# mixture of the retrained block (`module: quicknet`), GDAS's hard Gumbel samples, and the
# block as EBNAS searches (`quicknet_search`: real latent weights, BN on batch statistics), and
# the softmax search with a budget strong enough to hold E[OPs] in the window while it
# searches (at strength 1 E[OPs] fell to 0.36M of a 0.485M target as the alphas collapsed to
# pools, and the derivation's fit, not the alphas, chose which blocks became convs).
BLOCK_SEARCHES = {"block_search": (), "block_search_gumbel": ("op_weights=gumbel_hard",),
                  "block_search_qsearch": ("module=quicknet_search",),
                  "block_search_budget": ("ops_budget.strength=50",),
                  # no budget: every network of the dilation sub-space has the same OPs
                  "block_search_dilation": (f"primitives=[{','.join(DILATION_OPS)}]",
                                            "ops_budget.target=null"),
                  # SPOS / RS-WS: uniform single paths, no alphas; the blocks the best of 100
                  # networks drawn in the window by one-shot accuracy (search/oneshot.py).
                  "block_search_uniform": ("op_weights=uniform",),
                  # The same search in NARROW_TEMPLATE (BLOCK_TEMPLATES), the same window.
                  "block_search_uniform_narrow": ("op_weights=uniform",)}
# Width against depth at the same OPs (issue 14). In QuickNet's template at the window's OPs the
# float stem, transitions and head take 350k of QuickNet's 520k OPs: the window admits at most
# 6 binary 3x3 convs, so block choices have little to trade. Narrower sections cost a quarter
# less float (216k at [12, 24, 48]) and a binary 3x3 conv 0.56x, so 15 blocks fit: all 3x3
# convs is 0.454M, inside the window. The searches named here run in the template given
# (filters and blocks over the window's), their random baseline is NARROW_RANDOM QuickNets of
# random blocks in it, and QuickNet's own block at every position of it is the hand-designed
# point (`narrow` stage).
NARROW_TEMPLATE = {"filters": [12, 24, 48], "blocks": [5, 5, 5]}
NARROW_SEARCH = "block_search_uniform_narrow"  # the search in it
BLOCK_TEMPLATES = {NARROW_SEARCH: NARROW_TEMPLATE}
NARROW_RANDOM = 4  # random networks of the narrow template, every seed each
NARROW_RECORD = "narrow_random.json"  # their blocks, drawn once


@dataclasses.dataclass(frozen=True)
class Family:
    """The supernet row's alphas genotypes and its first `random` random networks retrained
    with one change (`sets`): does the searched cell still lead, and does the change close
    the gap to QuickNet? One record serves the stage, its table and its comparison."""

    sets: tuple
    random: int  # the first random networks of the supernet row, every seed each
    title: str  # the report's table
    versus: str  # the report's comparison with the random networks under the same change
    searched_with: str | None = None  # the stage whose searches ran with the change too


FAMILIES = {
    "transitions": Family(
        (f"reduction={TRANSITIONS}",), 4,
        f"float transitions in place of the reduction cells (`reduction: {TRANSITIONS}`)",
        f"With float transitions at the reductions (`reduction: {TRANSITIONS}`), the searched "
        "normal cells against the random networks' under the same template"),
    # The cells' 1x1 input projections are plain binary convs (DARTS, EBNAS): every cell
    # boundary binarizes all that crosses it, where QuickNet and Bi-Real keep a real-valued
    # path through every block. A group-mean shortcut on each projection (no MACs).
    "projection": Family(
        ("module={preset: ebnas_retrain, projection_shortcut: true}",), 4,
        "real-valued shortcuts on the cell-input projections (`module.projection_shortcut`)",
        "With real-valued shortcuts on the cell-input projections, the searched cells against "
        "the random networks' under the same change"),
    # QuickNet's block in place of EBNAS's retraining module, every op and projection.
    "quicknet_block": Family(
        ("module=quicknet",), 4,
        "QuickNet's block as every binary conv module (`module: quicknet`)",
        "With QuickNet's block as every binary conv module, the searched cells against the "
        "random networks' under the same change", searched_with="quicknet_search"),
}
# The supernet row's searches with another module in the supernet, each genotype retrained as
# given: does a search under the module it retrains with pick cells that suit it better?
# EBNAS searches with real weights and no pre-BN (`ebnas_search`) and retrains with
# `ebnas_retrain`; `retrain_module` searches with the retraining module itself;
# `quicknet_search` with QuickNet's block, retrained with it.
SEARCHED_WITH = {"retrain_module": (("module=ebnas_retrain",), ()),
                 "quicknet_search": (("module=quicknet_search",), ("module=quicknet",))}

MODULES = {  # the reference genotype retrained under each; ebnas_retrain is the reference
    "ebnas_retrain": None,
    "bireal": "bireal",
    "no_pre_bn": "{preset: ebnas_retrain, pre_bn: false}",
    "relu": "{preset: ebnas_retrain, activation: relu}",
    "no_activation": "{preset: ebnas_retrain, activation: none}",
    "no_shortcut": "{preset: ebnas_retrain, shortcut: false}",
    "unscaled_sign": "{preset: ebnas_retrain, weights: sign}",
}


def early_stop_off() -> tuple:
    """Overrides that run a search to its last epoch (the `early_stop.enabled` switch where the
    schema has one, else both rules off)."""
    from ubnas_tf import config as config_lib

    if "enabled" in config_lib.defaults("search")["early_stop"]:
        return ("early_stop.enabled=false",)
    return ("early_stop.patience=null", "early_stop.max_skip=null")


class Ablations:
    def __init__(self, experiment: protocol.Experiment, seeds: int | None = None):
        self.exp = experiment
        self.seeds = range(seeds or experiment.budget.seeds)

    def _pair(self, label: str, seed: int, search_sets=(), train_sets=(),
              continues: str | None = None) -> list:
        """A search and the retraining of its genotype, both with `seed` (the search continuing
        row `continues`'s search of that seed, when given)."""
        search_key = f"{label}_search-{seed}"
        genotype = lambda: self.exp.result(search_key)["genotype"]  # noqa: E731
        return [self.exp.search_unit(search_key, seed, sets=search_sets, continues=(
                    f"{continues}_search-{seed}" if continues else None)),
                self.exp.train_unit(f"{label}_seed-{seed}", "genotype", seed, genotype=genotype,
                                    sets=train_sets)]

    def _rows(self, labels_sets: dict, continues: str | None = None) -> list:
        """Every row's searches, then their retrainings."""
        pairs = [self._pair(label, seed, search_sets, train_sets, continues)
                 for label, (search_sets, train_sets) in labels_sets.items()
                 for seed in self.seeds]
        return [search for search, _ in pairs] + [train for _, train in pairs]

    @functools.cache
    def supernet_images(self) -> int:
        """The supernet row's `max_examples`: SUPERNET_SCALE x the reference search's (the
        config is loaded once)."""
        from ubnas_tf import config as config_lib

        budget = self.exp.budget
        search = config_lib.load("search", [protocol.ROOT / budget.search_config],
                                 budget.search_sets)
        if search["max_examples"] is None:
            raise protocol.UserError(f"{budget.search_config} searches on every training image "
                                     "(max_examples: null): the supernet row has none to add")
        return SUPERNET_SCALE * int(search["max_examples"])

    def supernet_label(self) -> str:
        """The supernet row's units are `<label>_search-K`, `<label>_seed-K`, `<label>-...`."""
        return f"images-{self.supernet_images()}"

    def k_settings(self) -> list:
        """The reference's (normal, reduce) K first, then two other settings (K at most the
        supernet's channels: each op needs one channel or more)."""
        from ubnas_tf import config as config_lib
        from ubnas_tf.search.channels import resolve_partial

        budget = self.exp.budget
        search = config_lib.load("search", [protocol.ROOT / budget.search_config],
                                 budget.search_sets)
        resolved = resolve_partial(search)  # K follows from partial_channels.per_op when null
        reference = (resolved["normal"], resolved["reduce"])
        others = [k for k in K_SETTINGS if k != reference and max(k) <= search["channels"]]
        return [reference] + others[:2]

    def stages(self) -> dict:
        reference = lambda: self.exp.result("default_search-0")["genotype"]  # noqa: E731
        return {
            "default": lambda: self._rows({"default": ((), ())}),
            "sign": lambda: self._rows({"sign-ste": SIGNS["ste"]}),
            # The reference row too: the reference genotype under every seed (the `default`
            # row's seed K retrains search K's genotype; this one compares one genotype).
            "module": lambda: [
                self.exp.train_unit(f"module-{label}_seed-{seed}", "genotype", seed,
                                    genotype=reference,
                                    sets=(f"module={value}",) if value else ())
                for label, value in MODULES.items() for seed in self.seeds],
            # min_per_op=1: the ablation measures K below the shipped minimum of channels per op.
            "k": lambda: self._rows({f"k-{n}-{r}": ((f"partial_channels.normal={n}",
                                                     f"partial_channels.reduce={r}",
                                                     "partial_channels.min_per_op=1"), ())
                                     for n, r in self.k_settings()[1:]}),
            "early_stop": lambda: self._rows({"nostop": (early_stop_off(), ())}),
            "supernet": lambda: self._rows({
                self.supernet_label(): ((f"max_examples={self.supernet_images()}",), ())}),
            "supernet_pt": self.supernet_pt,
            "supernet_random": self.supernet_random,
            "supernet_baselines": self.supernet_baselines,
            # The supernet row's searches continued from their checkpoints, early stopping off.
            "supernet_nostop": lambda: self._rows(
                {f"{self.supernet_label()}-nostop": (
                    (f"max_examples={self.supernet_images()}", *early_stop_off()), ())},
                continues=self.supernet_label()),
            "supernet_long": self.supernet_long,
            "templates": self.templates,
            "quicknet_ops": self.quicknet_ops,
            **{name: functools.partial(self.block_search, name) for name in BLOCK_SEARCHES},
            **{f"{name}_seeds": functools.partial(self.block_search_seeds, name)
               for name in BLOCK_SEARCHES},
            "block_search_long": self.block_search_long,
            "dilation_random": self.dilation_random,
            "dilation_long": self.dilation_long,
            # The same check on the uniform (SPOS / RS-WS) search: its random networks are
            # block_search_long's (the same units).
            "uniform_long": lambda: self._long_blocks("block_search_uniform",
                                                      "quicknet_ops-random",
                                                      seeds=range(UNIFORM_LONG_SEEDS)),
            "oneshot_ranking": self.oneshot_ranking,
            "rsws": self.rsws,
            "uniform_topk": self.uniform_topk,
            "narrow": self.narrow,
            "narrow_long": self.narrow_long,
            "narrow_oneshot": self.narrow_oneshot,
            **{name: functools.partial(self.family, name) for name in FAMILIES},
            **{name: functools.partial(self.searched_with, name) for name in SEARCHED_WITH},
        }

    def supernet_pt(self) -> list:
        """DARTS-PT's selection on the supernet row's searches and the retraining of each
        (derivations first, then retrainings: one seed per process with @K/N), then the
        reference: compare.py's selections on the reference searches, retrained the same way."""
        label = self.supernet_label()
        exp, flags = self.exp, self.exp.budget.selection_flags
        derives = [exp.derive_unit(f"{label}_pt-{seed}", f"{label}_search-{seed}", flags)
                   for seed in self.seeds]
        trains = [exp.train_unit(f"{label}-pt_seed-{seed}", "genotype", seed, genotype=(
            lambda seed=seed: exp.result(f"{label}_pt-{seed}")["genotype"]))
            for seed in self.seeds]
        reference = [exp.train_unit(f"default-pt_seed-{seed}", "genotype", seed, genotype=(
            lambda seed=seed: exp.reused_result(f"derive_pt-{seed}")["genotype"]))
            for seed in self.seeds]
        return derives + trains + reference

    def supernet_random_genotypes(self) -> dict:
        """SUPERNET_RANDOM random genotypes within the budget's OPs tolerance of the mean OPs
        of the supernet row's genotypes (both selections), written once as
        supernet_random_genotypes.json (its genotypes sit below compare.py's random window).
        A record of fewer (SUPERNET_RANDOM was raised) grows: the same seed and window draw
        its genotypes first, then the new ones."""
        from experiments.ops_matching import genotype_cost_model, random_genotypes_record
        from ubnas_tf.io_utils import atomic_write_json
        from ubnas_tf.search_space.genotype import Genotype

        def draw(target, seed=0):
            search, train = self.exp.configs()
            return random_genotypes_record(search, train, self.exp.dataset_info(),
                                           count=SUPERNET_RANDOM, target=target, seed=seed,
                                           tolerance=self.exp.budget.ops_tolerance)

        def make():
            search, train = self.exp.configs()
            model = genotype_cost_model(search, train, self.exp.dataset_info())
            label = self.supernet_label()
            genotypes = [self.exp.result(f"{label}_{kind}-{seed}")["genotype"]
                         for kind in ("search", "pt") for seed in self.seeds]
            target = sum(model.genotype_ops(Genotype.from_dict(g)) for g in genotypes)
            return draw(target / len(genotypes))

        name = "supernet_random_genotypes.json"
        record = self.exp.written_once(name, make)
        if len(record["genotypes"]) < SUPERNET_RANDOM:
            if record["tolerance"] != self.exp.budget.ops_tolerance:
                raise protocol.UserError(f"{name} was drawn with another OPs tolerance: move it "
                                         "away to draw all its networks again")
            grown = draw(record["target_ops"], record["seed"])
            if grown["genotypes"][:len(record["genotypes"])] != record["genotypes"]:
                raise protocol.UserError(f"{name}'s genotypes are not the first of the same "
                                         "draw (another search space or cost model?): move it "
                                         "away to draw all its networks again")
            atomic_write_json(self.exp.results_dir / name, grown)
            record = grown
        return record

    def _alphas(self, seed: int):
        """The genotype of the supernet row's search `seed`, read when a unit needs it."""
        return lambda: self.exp.result(f"{self.supernet_label()}_search-{seed}")["genotype"]

    def _random(self, j: int):
        """The supernet row's random network `j`, read when a unit needs it."""
        return lambda: self.supernet_random_genotypes()["genotypes"][j]["genotype"]

    def supernet_random(self) -> list:
        """Random networks at the supernet row's OPs, each retrained with every seed."""
        label = f"{self.supernet_label()}-random"
        return [self.exp.train_unit(f"{label}-{j}_seed-{seed}", "genotype", seed,
                                    genotype=self._random(j))
                for j in range(SUPERNET_RANDOM) for seed in self.seeds]

    def supernet_baseline_sizes(self) -> dict:
        """SUPERNET_BASELINES sized to the random networks' target (the supernet row's mean
        OPs), written once as supernet_baselines.json."""
        def make():
            from experiments.ops_matching import baseline_sizes_record

            return baseline_sizes_record(
                SUPERNET_BASELINES, self.exp.dataset_info(),
                target=self.supernet_random_genotypes()["target_ops"],
                tolerance=self.exp.budget.ops_tolerance)

        return self.exp.written_once("supernet_baselines.json", make)

    def supernet_baselines(self) -> list:
        """Each of SUPERNET_BASELINES at the supernet row's OPs, retrained with every seed."""
        from experiments.ops_matching import settings_as_sets

        label = self.supernet_label()
        return [self.exp.train_unit(
            f"{label}-{name}_seed-{seed}", name, seed, model=name,
            sets=lambda name=name: settings_as_sets(
                name, self.supernet_baseline_sizes()[name]["settings"]))
            for name in SUPERNET_BASELINES for seed in self.seeds]

    def family(self, name: str) -> list:
        """FAMILIES[name]: the supernet row's alphas genotypes (search K retrained with seed K)
        and its first `random` random networks (seed by seed: every network's seed 0 before
        any seed 1), retrained with its `sets`, as `<row>-<name>_seed-K` and
        `<row>-<name>-random-J_seed-K`."""
        sets, random = FAMILIES[name].sets, FAMILIES[name].random
        label, exp = f"{self.supernet_label()}-{name}", self.exp
        searched = [exp.train_unit(f"{label}_seed-{seed}", "genotype", seed, sets=sets,
                                   genotype=self._alphas(seed)) for seed in self.seeds]
        return searched + [exp.train_unit(f"{label}-random-{j}_seed-{seed}", "genotype", seed,
                                          sets=sets, genotype=self._random(j))
                           for seed in self.seeds for j in range(random)]

    def searched_with(self, name: str) -> list:
        """SEARCHED_WITH[name]: the supernet row's searches (its images, every seed) with the
        search overrides, each genotype retrained with the retraining's, as
        `<row>-<name>_search-K` and `<row>-<name>_seed-K`."""
        search_sets, train_sets = SEARCHED_WITH[name]
        return self._rows({f"{self.supernet_label()}-{name}": (
            (f"max_examples={self.supernet_images()}", *search_sets), train_sets)})

    def supernet_long(self) -> list:
        """The budget check on the supernet row: its alphas genotypes (search K, seed K),
        QuickNet at its OPs (every seed) and its first LONG_RANDOM random networks (seed 0)
        retrained for the budget's long epochs. Does QuickNet's lead hold at a longer budget?"""
        from experiments.ops_matching import settings_as_sets

        label, exp = f"{self.supernet_label()}-long", self.exp
        sets = (f"epochs={exp.budget.budget_epochs[1]}",)
        searched = [exp.train_unit(f"{label}_seed-{seed}", "genotype", seed, sets=sets,
                                   genotype=self._alphas(seed)) for seed in self.seeds]
        baselines = [exp.train_unit(
            f"{label}-{name}_seed-{seed}", name, seed, model=name, sets=sets,
            late_sets=lambda name=name: settings_as_sets(
                name, self.supernet_baseline_sizes()[name]["settings"]))
            for name in SUPERNET_BASELINES for seed in self.seeds]
        random = [exp.train_unit(f"{label}-random-{j}_seed-0", "genotype", 0, sets=sets,
                                 genotype=self._random(j)) for j in range(LONG_RANDOM)]
        return searched + baselines + random

    def template_random_genotypes(self, name: str) -> dict:
        """TEMPLATE_RANDOM random genotypes of template `name` (TEMPLATES) in the window of
        the supernet row's random networks (same target, tolerance and seed), written once as
        template_<name>_random_genotypes.json."""
        from experiments.ops_matching import random_genotypes_record

        def make():
            search, train = self.exp.configs()
            template = TEMPLATES[name]
            nodes, stem = template["nodes"], template["stem_multiplier"]
            return random_genotypes_record(
                {**search, "nodes": nodes, "multiplier": nodes, "stem_multiplier": stem},
                {**train, "channels": template["channels"], "stem_multiplier": stem},
                self.exp.dataset_info(), count=TEMPLATE_RANDOM,
                target=self.supernet_random_genotypes()["target_ops"],
                tolerance=self.exp.budget.ops_tolerance)

        return self.exp.written_once(f"template_{name}_random_genotypes.json", make)

    def templates(self) -> list:
        """Every template's random networks (seed by seed: all networks' seed 0 first),
        retrained at the template's channels and stem."""
        exp, label, units = self.exp, self.supernet_label(), []
        for seed in self.seeds:
            for name, template in TEMPLATES.items():
                sets = (f"channels={template['channels']}",
                        f"stem_multiplier={template['stem_multiplier']}")
                units += [exp.train_unit(
                    f"{label}-{name}-random-{j}_seed-{seed}", "genotype", seed,
                    sets=sets, genotype=(lambda name=name, j=j: self.template_random_genotypes(
                        name)["genotypes"][j]["genotype"])) for j in range(TEMPLATE_RANDOM)]
        return units

    def quicknet_ops_record(self) -> dict:
        """QUICKNET_OPS_RANDOM QuickNets of the supernet row's QuickNet size with random blocks,
        in the window of the row's random networks, written once as quicknet_ops_random.json."""
        def make():
            from experiments.ops_matching import random_block_ops_record

            return random_block_ops_record(
                self.supernet_baseline_sizes()["quicknet"]["settings"], self.exp.dataset_info(),
                count=QUICKNET_OPS_RANDOM, target=self.supernet_random_genotypes()["target_ops"],
                tolerance=self.exp.budget.ops_tolerance)

        return self.exp.written_once(QUICKNET_OPS_RECORD, make)

    def quicknet_ops(self) -> list:
        """Each QuickNet of random blocks retrained with every seed (seed by seed), as
        `<row>-quicknet_ops-random-J_seed-K`."""
        return self._random_blocks_units("quicknet_ops-random", QUICKNET_OPS_RANDOM)

    def _random_blocks_units(self, name: str, count: int, record=None) -> list:
        """The first `count` QuickNets of `record()` (default `quicknet_ops_record`) retrained
        with every seed (seed by seed), as `<row>-NAME-J_seed-K`."""
        label = f"{self.supernet_label()}-{name}"
        return [self.exp.train_unit(f"{label}-{j}_seed-{seed}", "quicknet", seed,
                                    model="quicknet",
                                    sets=functools.partial(self._random_blocks_sets, j, record))
                for seed in self.seeds for j in range(count)]

    def _random_blocks_sets(self, j: int, record=None) -> tuple:
        """The retraining overrides of QuickNet `j` of `record()` (default
        `quicknet_ops_record`, the QuickNets of random blocks)."""
        from experiments.ops_matching import settings_as_sets

        record = (record or self.quicknet_ops_record)()
        return settings_as_sets("quicknet", {**record["settings"],
                                             "ops": record["networks"][j]["block_ops"]})

    def dilation_record(self) -> dict:
        """DILATION_RANDOM QuickNets whose blocks are drawn uniformly from DILATION_OPS (all
        at QuickNet's OPs), written once as dilation_random.json: the random baseline of
        block_search_dilation."""
        def make():
            from experiments.ops_matching import random_block_ops_record

            quicknet = self.supernet_baseline_sizes()["quicknet"]
            return random_block_ops_record(
                quicknet["settings"], self.exp.dataset_info(), count=DILATION_RANDOM,
                target=quicknet["ops"], tolerance=0.0, choices=DILATION_OPS)

        return self.exp.written_once(DILATION_RECORD, make)

    def dilation_random(self) -> list:
        """Each random network of the dilation sub-space retrained with every seed, as
        `<row>-dilation-random-J_seed-K`."""
        return self._random_blocks_units("dilation-random", DILATION_RANDOM,
                                         self.dilation_record)

    def block_search(self, name: str) -> list:
        """A block-level search (tools/search_blocks.py with BLOCK_SEARCHES[name]) in the
        template `search_settings(name)` (quicknet_ops's unless BLOCK_TEMPLATES names another),
        budgeted to quicknet_ops's OPs window, on the supernet row's images; each search K's
        blocks retrained with seed K as `<row>-NAME_seed-K`."""
        record, settings = self.quicknet_ops_record(), self.search_settings(name)
        search_sets = (f"max_examples={self.supernet_images()}",
                       f"ops_budget.target={record['target_ops']}",
                       f"ops_budget.tolerance={record['tolerance']}",
                       *(f"template.{key}={value}".replace(" ", "")
                         for key, value in settings.items()), *BLOCK_SEARCHES[name])
        label = f"{self.supernet_label()}-{name}"
        searches = [self.exp.block_search_unit(f"{label}_search-{seed}", seed, search_sets)
                    for seed in self.seeds]
        trains = [self.exp.train_unit(f"{label}_seed-{seed}", "quicknet", seed,
                                      model="quicknet", sets=functools.partial(
                                          self._searched_blocks_sets, name, seed))
                  for seed in self.seeds]
        return searches + trains

    def search_settings(self, name: str) -> dict:
        """The template (filters, blocks) block search `name` searches in: the row's QuickNet
        size (quicknet_ops_record) unless BLOCK_TEMPLATES names another."""
        return {**self.quicknet_ops_record()["settings"], **BLOCK_TEMPLATES.get(name, {})}

    def _blocks_sets(self, ops: list, settings=None) -> tuple:
        """The retraining overrides of QuickNet's template (`settings`, default the row's)
        with blocks `ops`."""
        from experiments.ops_matching import settings_as_sets

        settings = settings or self.quicknet_ops_record()["settings"]
        return settings_as_sets("quicknet", {**settings, "ops": ops})

    def _searched_blocks_sets(self, name: str, search: int) -> tuple:
        """The retraining overrides of block search `search` of BLOCK_SEARCHES[name]."""
        return self._blocks_sets(
            self.exp.result(f"{self.supernet_label()}-{name}_search-{search}")["blocks"]["ops"],
            self.search_settings(name))

    def narrow_record(self) -> dict:
        """NARROW_RANDOM QuickNets of NARROW_TEMPLATE with random blocks in the window of
        quicknet_ops_record, written once as NARROW_RECORD."""
        def make():
            from experiments.ops_matching import random_block_ops_record

            window = self.quicknet_ops_record()
            return random_block_ops_record(
                self.search_settings(NARROW_SEARCH), self.exp.dataset_info(),
                count=NARROW_RANDOM, target=window["target_ops"],
                tolerance=window["tolerance"])

        return self.exp.written_once(NARROW_RECORD, make)

    def narrow(self) -> list:
        """NARROW_TEMPLATE's hand-designed point and random baseline, every seed (seed by
        seed): QuickNet's block at every position (`<row>-narrow-quicknet`) and the
        QuickNets of random blocks of narrow_record (`<row>-narrow-random-J`)."""
        label = f"{self.supernet_label()}-narrow"
        units = []
        for seed in self.seeds:
            units.append(self.exp.train_unit(f"{label}-quicknet_seed-{seed}", "quicknet", seed,
                                             model="quicknet", sets=self._narrow_quicknet_sets()))
            units += [self.exp.train_unit(
                f"{label}-random-{j}_seed-{seed}", "quicknet", seed, model="quicknet",
                sets=functools.partial(self._random_blocks_sets, j, self.narrow_record))
                for j in range(NARROW_RANDOM)]
        return units

    def _narrow_quicknet_sets(self) -> tuple:
        """The retraining overrides of QuickNet's block at every position of NARROW_TEMPLATE."""
        from experiments.ops_matching import settings_as_sets

        return settings_as_sets("quicknet", self.search_settings(NARROW_SEARCH))

    def narrow_long(self) -> list:
        """The budget check on the narrow template, seeds 0 to NARROW_LONG_SEEDS - 1: its
        uniform search's networks and first LONG_RANDOM random networks (`_long_blocks`), then
        QuickNet's block at every position of it, at the budget's long epochs."""
        seeds, exp = range(NARROW_LONG_SEEDS), self.exp
        sets = (f"epochs={exp.budget.budget_epochs[1]}", *self._narrow_quicknet_sets())
        return self._long_blocks(NARROW_SEARCH, "narrow-random",
                                 self.narrow_record, seeds=seeds) + [
            exp.train_unit(f"{self.supernet_label()}-long-narrow-quicknet_seed-{seed}",
                           "quicknet", seed, model="quicknet", sets=sets) for seed in seeds]

    def narrow_labelled(self) -> list:
        """(label, block ops) of every network retrained in NARROW_TEMPLATE: QuickNet's block
        at every position, narrow_record's random ones, the narrow search's."""
        label = self.supernet_label()
        record = self.narrow_record()["networks"][:NARROW_RANDOM]
        return [(f"{label}-narrow-quicknet", ["bin_conv_3x3"] * sum(NARROW_TEMPLATE["blocks"])),
                *((f"{label}-narrow-random-{j}", network["block_ops"])
                  for j, network in enumerate(record)),
                *((f"{label}-{NARROW_SEARCH}-net-{search}", self.exp.result(
                    f"{label}-{NARROW_SEARCH}_search-{search}")["blocks"]["ops"])
                  for search in self.seeds)]

    def narrow_oneshot(self) -> list:
        """Each narrow search ranks every network retrained in NARROW_TEMPLATE with its
        supernet's weights, as `<row>-NARROW_SEARCH_oneshot-K`."""
        label = self.supernet_label()
        return [self.exp.rank_unit(f"{label}-{NARROW_SEARCH}_oneshot-{search}",
                                   f"{label}-{NARROW_SEARCH}_search-{search}",
                                   networks=lambda: [ops for _, ops in self.narrow_labelled()])
                for search in self.seeds]

    def block_search_seeds(self, name: str) -> list:
        """Each network a block search of BLOCK_SEARCHES[name] found, retrained with every
        seed as `<row>-NAME-net-K_seed-J` (search K's own seed is its retraining, the same
        spec, so reused): a mean over the seeds per network, as each random network has."""
        label = f"{self.supernet_label()}-{name}"
        return [self.exp.train_unit(f"{label}-net-{search}_seed-{seed}", "quicknet", seed,
                                    model="quicknet", sets=functools.partial(
                                        self._searched_blocks_sets, name, search))
                for seed in self.seeds for search in self.seeds]

    def block_search_long(self) -> list:
        """The budget check on the block search (`block_search`): each search's network and
        the first LONG_RANDOM QuickNets of random blocks, seed 0, retrained for the budget's
        long epochs, beside QuickNet's (supernet_long). Does their order hold?"""
        return self._long_blocks("block_search", "quicknet_ops-random")

    def dilation_long(self) -> list:
        """The same budget check on the dilation sub-space: block_search_dilation's networks
        and the first LONG_RANDOM random dilation patterns, seed 0, at the long budget."""
        return self._long_blocks("block_search_dilation", "dilation-random",
                                 self.dilation_record)

    def oneshot_record(self) -> dict:
        """Every network of the block template retrained with every seed, by its ops (one
        entry per distinct network, with the labels of its runs), written once as
        ONESHOT_RECORD: the networks the one-shot rankings rank."""
        def make():
            label = self.supernet_label()
            # QuickNet: its own block, plain 3x3, at every position of the same template.
            labelled = [(f"{label}-quicknet", ["bin_conv_3x3"] * self._block_count())]
            for name, count, record in (
                    ("quicknet_ops-random", QUICKNET_OPS_RANDOM, self.quicknet_ops_record()),
                    ("dilation-random", DILATION_RANDOM, self.dilation_record())):
                labelled += [(f"{label}-{name}-{j}", record["networks"][j]["block_ops"])
                             for j in range(count)]
            for name in _row_template_searches():
                labelled += [(f"{label}-{name}-net-{search}", self.exp.result(
                    f"{label}-{name}_search-{search}")["blocks"]["ops"])
                    for search in self.seeds]
            networks = {}
            for run_label, ops in labelled:
                networks.setdefault(tuple(ops), []).append(run_label)
            return {"networks": [{"block_ops": list(ops), "labels": labels}
                                 for ops, labels in networks.items()]}

        return self.exp.written_once(ONESHOT_RECORD, make)

    def _block_count(self) -> int:
        return sum(self.quicknet_ops_record()["settings"]["blocks"])

    def _oneshot_networks(self, name: str) -> list:
        """The networks of ONESHOT_RECORD that block search `name`'s supernet can run."""
        from ubnas_tf import config as config_lib
        from ubnas_tf.search.block_architect import block_primitives

        searched = config_lib.load("search_blocks", [], BLOCK_SEARCHES[name])["primitives"]
        primitives = set(block_primitives(searched))
        return [n["block_ops"] for n in self.oneshot_record()["networks"]
                if set(n["block_ops"]) <= primitives]

    def oneshot_ranking(self) -> list:
        """Each search of ONESHOT_SEARCHES ranks the retrained networks it can run, with its
        supernet's weights, as `<row>-NAME_oneshot-K`."""
        label = self.supernet_label()
        return [self.exp.rank_unit(f"{label}-{name}_oneshot-{search}",
                                   f"{label}-{name}_search-{search}",
                                   networks=functools.partial(self._oneshot_networks, name))
                for name in ONESHOT_SEARCHES for search in self.seeds]

    def rsws(self) -> list:
        """Random search with weight sharing: RSWS_CANDIDATES networks drawn in the budget's
        window ranked by each RSWS_SEARCH supernet (`<row>-rsws_rank-K`), the best of search
        K retrained with every seed (`<row>-rsws-net-K_seed-J`; rankings first)."""
        label = self.supernet_label()
        ranks = [self.exp.rank_unit(f"{label}-rsws_rank-{search}",
                                    f"{label}-{RSWS_SEARCH}_search-{search}",
                                    candidates=RSWS_CANDIDATES) for search in self.seeds]
        trains = [self.exp.train_unit(f"{label}-rsws-net-{search}_seed-{seed}", "quicknet", seed,
                                      model="quicknet",
                                      sets=functools.partial(self._rsws_sets, search))
                  for seed in self.seeds for search in self.seeds]
        return ranks + trains

    def _rsws_sets(self, search: int) -> tuple:
        """The retraining overrides of RS-WS's best network of search `search`."""
        best = self.exp.result(f"{self.supernet_label()}-rsws_rank-{search}")["ranking"][0]
        return self._blocks_sets(best["block_ops"])

    def uniform_topk(self) -> list:
        """Each uniform search's ranking again (`<row>-uniform_rank-K`), its UNIFORM_TOPK best
        trained once with SELECTION_SEED (`<row>-uniform_topk-K-J_seed-S`, J: one-shot rank),
        the one of highest val_top1 retrained with every seed (`<row>-uniform_topk-net-K_seed-
        J`; the one-shot best's runs are block_search_uniform_seeds', reused). Rankings first,
        then the selection runs, then the retrainings."""
        from ubnas_tf import config as config_lib

        label = self.supernet_label()
        candidates = config_lib.load("search_blocks", [], BLOCK_SEARCHES[
            "block_search_uniform"])["candidates"]
        ranks = [self.exp.rank_unit(f"{label}-uniform_rank-{search}",
                                    f"{label}-block_search_uniform_search-{search}",
                                    candidates=candidates, seed=search)
                 for search in self.seeds]
        selections = [self.exp.train_unit(
            self._selection_key(search, j), "quicknet", SELECTION_SEED, model="quicknet",
            sets=lambda search=search, j=j: self._blocks_sets(self.uniform_top(search)[j]))
            for search in self.seeds for j in range(UNIFORM_TOPK)]
        trains = [self.exp.train_unit(
            f"{label}-uniform_topk-net-{search}_seed-{seed}", "quicknet", seed,
            model="quicknet", sets=lambda search=search: self._blocks_sets(
                self.uniform_top(search)[self.uniform_selected(search)]))
            for seed in self.seeds for search in self.seeds]
        return ranks + selections + trains

    def uniform_top(self, search: int) -> list:
        """The UNIFORM_TOPK best networks (op lists) of uniform search `search`'s ranking."""
        ranking = self.exp.result(f"{self.supernet_label()}-uniform_rank-{search}")["ranking"]
        return [entry["block_ops"] for entry in ranking[:UNIFORM_TOPK]]

    def _selection_key(self, search: int, j: int) -> str:
        return f"{self.supernet_label()}-uniform_topk-{search}-{j}_seed-{SELECTION_SEED}"

    def uniform_selected(self, search: int) -> int:
        """The one-shot rank of uniform search `search`'s selected network (`_pick`), once
        every selection run has run (else a one-line error naming the stage)."""
        return _pick([self.exp.result(self._selection_key(search, j))["val_top1"]
                      for j in range(UNIFORM_TOPK)])

    def _long_blocks(self, name: str, random_name: str, record=None, seeds=(0,)) -> list:
        """Block search `name`'s networks and the first LONG_RANDOM QuickNets of `record()`
        (`<row>-RANDOM_NAME-J`), each seed of `seeds`, retrained for the budget's long epochs
        (seed by seed: the first seed's runs come first)."""
        label, exp = f"{self.supernet_label()}-long", self.exp
        sets = (f"epochs={exp.budget.budget_epochs[1]}",)
        units = []
        for seed in seeds:
            units += [exp.train_unit(f"{label}-{name}-net-{search}_seed-{seed}", "quicknet",
                                     seed, model="quicknet", sets=sets,
                                     late_sets=functools.partial(self._searched_blocks_sets,
                                                                 name, search))
                      for search in self.seeds]
            units += [exp.train_unit(f"{label}-{random_name}-{j}_seed-{seed}", "quicknet", seed,
                                     model="quicknet", sets=sets, late_sets=functools.partial(
                                         self._random_blocks_sets, j, record))
                      for j in range(LONG_RANDOM)]
        return units

    # --- the report -------------------------------------------------------------------------

    def _runs(self, label: str) -> list:
        runs = []
        for seed in self.seeds:
            trained = self.exp.cached(f"{label}_seed-{seed}")
            if trained:
                search = self.exp.cached(f"{label}_search-{seed}")
                runs.append({"seed": seed, "train": trained["result"],
                             "search": search["result"] if search else None})
        return runs

    def _row(self, name: str, *labels: str) -> dict:
        """A table row over the runs of every label (several for random networks)."""
        runs = [run for label in labels for run in self._runs(label)]
        searches = [r["search"] for r in runs if r["search"]]
        return {
            "row": name, "label": ", ".join(labels), "runs": len(runs),
            "test_top1": fmt_mean_std([r["train"]["test_top1"] for r in runs]),
            "val_top1": fmt_mean_std([r["train"].get("val_top1") for r in runs]),
            # Means over the runs that trained; a diverged run is listed, never averaged in.
            "every_run": ", ".join(run_text(r["train"]) for r in runs) or "-",
            "ops": mean_std([r["train"]["ops"] for r in runs]),
            "search_seconds": mean_std([s["search_seconds"] for s in searches]),
            "epochs_run": [s["epochs_run"] for s in searches],
        }

    def _network_means(self, labels) -> list:
        """Each label with runs as one network: the mean test top-1 over its seeds."""
        return [mean_std([r["train"]["test_top1"] for r in runs])[0]
                for runs in map(self._runs, labels) if runs]

    def _seed_networks(self, label: str) -> list:
        """A row whose seed K retrained search K's genotype: each run one network."""
        return [r["train"]["test_top1"] for r in self._runs(label)]

    def versus_random(self, random_label: str, rows, networks: int = SUPERNET_RANDOM) -> list:
        """Rows (name, network accuracies) against the random networks `<random_label>-J`,
        J < `networks` (each the mean over its seeds): the difference of the means of network
        means, with an exact permutation test where there are several networks on both
        sides. A search's genotype is one network (`_seed_networks`), so is QuickNet or a
        random network (`_network_means`)."""
        random = self._network_means(f"{random_label}-{j}" for j in range(networks))
        if not random:
            return []
        random_mean = mean_std(random)[0]
        table = [{"row": "random", "networks": random, "mean": random_mean,
                  "minus_random": 0.0, "p": None}]
        for name, row_networks in rows:
            if not row_networks:
                continue
            mean = mean_std(row_networks)[0]
            table.append({"row": name, "networks": row_networks, "mean": mean,
                          "minus_random": mean - random_mean,
                          "p": (permutation_p(row_networks, random)
                                if len(row_networks) > 1 and len(random) > 1 else None)})
        return table if len(table) > 1 else []

    def _baselines(self, label: str) -> tuple:
        """(name, [its mean over seeds]) of each of SUPERNET_BASELINES as `<label>-<name>`."""
        return tuple((name, self._network_means([f"{label}-{name}"]))
                     for name in SUPERNET_BASELINES)

    def supernet_versus_random(self, images: int) -> list:
        """The supernet row's genotypes and QuickNet against the random networks at their
        OPs."""
        label = f"images-{images}"
        return self.versus_random(f"{label}-random", (
            ("alphas", self._seed_networks(label)),
            ("DARTS-PT selection", self._seed_networks(f"{label}-pt")),
            ("run to the end", self._seed_networks(f"{label}-nostop")),
            ("searched with the retraining module",
             self._seed_networks(f"{label}-retrain_module")),
            *self._baselines(label)))

    def long_versus_random(self, images: int) -> list:
        """At the long budget: the searched cells and QuickNet against random ones."""
        label = f"images-{images}-long"
        return self.versus_random(f"{label}-random", (
            ("alphas", self._seed_networks(label)), *self._baselines(label)), LONG_RANDOM)

    def family_versus_random(self, images: int, name: str) -> list:
        """A family (FAMILIES): the searched cells against the random ones under the same
        change."""
        label, searched_with = f"images-{images}-{name}", FAMILIES[name].searched_with
        rows = [("alphas", self._seed_networks(label))]
        if searched_with:
            rows.append((f"alphas, searched with it ({searched_with})",
                         self._seed_networks(f"images-{images}-{searched_with}")))
        return self.versus_random(f"{label}-random", rows, FAMILIES[name].random)

    def _family_rows(self, images: int, name: str) -> list:
        """The report's rows of a family (FAMILIES): its alphas, its random networks."""
        rows = [self._row(f"{images:,}, alphas", f"images-{images}-{name}")]
        searched_with = FAMILIES[name].searched_with
        if searched_with:
            searched = self._row(f"{images:,}, alphas of searches with it ({searched_with})",
                                 f"images-{images}-{searched_with}")
            if searched["runs"]:  # a stage not run is left out
                rows.append(searched)
        return rows + [self._row(f"random networks of the {images:,} rows",
                                 *(f"images-{images}-{name}-random-{j}"
                                   for j in range(FAMILIES[name].random)))]

    def templates_versus_random(self, images: int) -> list:
        """Each template's random networks and QuickNet against the supernet row's random
        networks (4 nodes, C = 8) at the same OPs."""
        label = f"images-{images}"
        return self.versus_random(f"{label}-random", (
            *((f"random, {name}", self._network_means(
                f"{label}-{name}-random-{j}" for j in range(TEMPLATE_RANDOM)))
              for name in TEMPLATES),
            ("alphas (4 nodes, C = 8)", self._seed_networks(label)),
            *self._baselines(label)))

    def quicknet_ops_versus_random(self, images: int) -> list:
        """QuickNet (its own block at every position) and the row's searched cells against
        the QuickNets of random blocks, at the same OPs."""
        label = f"images-{images}"
        return self.versus_random(f"{label}-quicknet_ops-random", (
            *self._baselines(label), ("alphas (the row's cells)", self._seed_networks(label)),
            *((f"{name} (its blocks)", self._seed_networks(f"{label}-{name}"))
              for name in _row_template_searches()),
            *((f"{name}, every seed (network means)", self._network_means(
                f"{label}-{name}-net-{search}" for search in self.seeds))
              for name in _row_template_searches()),
            (f"RS-WS, {RSWS_SEARCH}'s supernets (network means)", self._network_means(
                f"{label}-rsws-net-{search}" for search in self.seeds)),
            (f"block_search_uniform, validation's pick of its one-shot top {UNIFORM_TOPK} "
             "(network means)", self._network_means(
                 f"{label}-uniform_topk-net-{search}" for search in self.seeds))),
            networks=QUICKNET_OPS_RANDOM)

    def _narrow_rows(self, images: int) -> list:
        """The report's rows of the narrow template: QuickNet's block at every position, its
        random blocks, the search in it; QuickNet and the uniform search in the row's template
        beside them."""
        label, name = f"images-{images}", NARROW_SEARCH
        row_template = _template_text(self.search_settings("block_search"))
        return [
            *(self._row(f"{baseline} ({row_template})", f"{label}-{baseline}")
              for baseline in SUPERNET_BASELINES),
            self._row(f"blocks searched (block_search_uniform, {row_template}), every network "
                      "x every seed", *(f"{label}-block_search_uniform-net-{search}"
                                        for search in self.seeds)),
            self._row("QuickNet's block at every position", f"{label}-narrow-quicknet"),
            self._row("random blocks of the binary space",
                      *(f"{label}-narrow-random-{j}" for j in range(NARROW_RANDOM))),
            self._row(f"blocks searched ({name})", f"{label}-{name}"),
            self._row(f"blocks searched ({name}), every network x every seed",
                      *(f"{label}-{name}-net-{search}" for search in self.seeds))]

    def narrow_versus_random(self, images: int, long: bool = False) -> list:
        """The narrow template's search and QuickNet's block in it, and the row's QuickNet
        and uniform search, against the narrow template's random blocks (all in the window);
        `long`: the same at the long budget (narrow_long, uniform_long, supernet_long)."""
        label, name = f"images-{images}{'-long' if long else ''}", NARROW_SEARCH
        return self.versus_random(f"{label}-narrow-random", (
            *((f"{baseline} ({_template_text(self.search_settings('block_search'))})",
               self._network_means([f"{label}-{baseline}"])) for baseline in SUPERNET_BASELINES),
            ("block_search_uniform, every seed (network means)", self._network_means(
                f"{label}-block_search_uniform-net-{search}" for search in self.seeds)),
            ("QuickNet's block at every position", self._network_means(
                [f"{label}-narrow-quicknet"])),
            (f"{name} (its blocks)", self._seed_networks(f"{label}-{name}")),
            (f"{name}, every seed (network means)", self._network_means(
                f"{label}-{name}-net-{search}" for search in self.seeds))),
            networks=LONG_RANDOM if long else NARROW_RANDOM)

    def dilation_versus_random(self, images: int) -> list:
        """QuickNet (the sub-space's all-plain corner) and the dilation search against the
        random networks of the dilation sub-space, all at QuickNet's OPs."""
        label, name = f"images-{images}", "block_search_dilation"
        return self.versus_random(f"{label}-dilation-random", (
            *self._baselines(label),
            (f"{name} (its blocks)", self._seed_networks(f"{label}-{name}")),
            (f"{name}, every seed (network means)", self._network_means(
                f"{label}-{name}-net-{search}" for search in self.seeds))),
            networks=DILATION_RANDOM)

    def _block_search_markdown(self, images: int, name: str) -> list:
        """What each block search of BLOCK_SEARCHES[name] returned, its OPs, time, and its
        retraining."""
        runs = self._runs(f"images-{images}-{name}")
        if not runs:
            return []
        template = _template_text(self.search_settings(name))
        lines = [f"Block searches (`{name}`, {template}; blocks in order; search K retrained "
                 "with seed K):", "",
                 "| search | blocks | OPs | search s | last change (epoch) | test top-1 |",
                 "|---|---|---|---|---|---|"]
        for run in runs:
            search, blocks = run["search"], run["search"]["blocks"]
            shown = _blocks_text(blocks["ops"])
            lines.append(f"| {run['seed']} | {shown} | {blocks['network_ops'] / 1e6:.3f}M | "
                         f"{search['search_seconds']:.0f} | {search['last_change_epoch']} | "
                         f"{percent(run['train']['test_top1'])} |")
        return lines + [""]

    def _random_blocks_markdown(self, images: int, record: str, label: str,
                                what: str) -> list:
        """What each QuickNet of random blocks of `record` (`<row>-<label>-J`) holds, its OPs
        and its mean over the seeds."""
        # Read, not drawn: the report never draws a record no stage has run on.
        path = self.exp.results_dir / record
        if not path.is_file():
            return []
        drawn = json.loads(path.read_text())
        lines = [f"QuickNets of {what} (`{record}`, {_template_text(drawn['settings'])}; "
                 "blocks in order):", "",
                 "| network | blocks | OPs | runs | test top-1 (mean) |", "|---|---|---|---|---|"]
        for j, network in enumerate(drawn["networks"]):
            runs = self._runs(f"images-{images}-{label}-{j}")
            stats = mean_std([r["train"]["test_top1"] for r in runs])
            mean = percent(stats[0]) if stats else "-"
            blocks = _blocks_text(network["block_ops"])
            lines.append(f"| {j} | {blocks} | {network['ops'] / 1e6:.3f}M | {len(runs)} | "
                         f"{mean} |")
        return lines + [""]

    @staticmethod
    def _versus_random_markdown(rows: list, title: str) -> list:
        if not rows:
            return []
        lines = [f"{title} (network means: a search's genotype is one network, QuickNet one; "
                 "exact permutation test on the network means):", "",
                 "| row | network means (test %) | mean | minus random (points) | p |",
                 "|---|---|---|---|---|"]
        for row in rows:
            shown = ", ".join(f"{100 * v:.2f}" for v in row["networks"])
            p = "-" if row["p"] is None else f"{row['p']:.3f}"
            lines.append(f"| {row['row']} | {shown} | {100 * row['mean']:.2f} | "
                         f"{100 * row['minus_random']:+.2f} | {p} |")
        return lines + [""]

    def early_stop_pairs(self, labels=("default", "nostop")) -> list:
        """Per seed, the same search with early stopping (row `labels[0]`) and run to the end
        (`labels[1]`): the rule that fired, epochs and seconds of each, whether they returned
        the same genotype, and the test top-1 each genotype retrained to (None where not run
        yet)."""
        pairs = []
        for seed in self.seeds:
            searches = [self.exp.cached(f"{label}_search-{seed}") for label in labels]
            if not all(searches):
                continue
            stopped, full = (search["result"] for search in searches)
            trained = [self.exp.cached(f"{label}_seed-{seed}") for label in labels]
            pairs.append({
                "seed": seed, "rule": stopped["stop_rule"],
                "epochs": [stopped["epochs_run"], full["epochs_run"]],
                "seconds": [stopped["search_seconds"], full["search_seconds"]],
                "same_genotype": stopped["genotype"] == full["genotype"],
                "test_top1": [unit["result"]["test_top1"] if unit else None
                              for unit in trained]})
        return pairs

    def report(self) -> dict:
        from ubnas_tf.io_utils import atomic_write_json, atomic_write_text

        out = self.exp.results_dir
        default = "default"
        images = self.supernet_images()
        tables = {
            "sign (search + retraining)": [self._row("ApproxSign (reference)", default),
                                           self._row("clipped STE", "sign-ste")],
            "module structure (reference genotype)": [
                self._row(name, f"module-{name}") for name in MODULES],
            "K (partial_channels normal / reduce)": [
                self._row(f"K = {n} / {r}" + (" (reference)" if not i else ""),
                          default if not i else f"k-{n}-{r}")
                for i, (n, r) in enumerate(self.k_settings())],
            "early stopping": [self._row("early stop (reference)", default),
                               self._row("run to the end", "nostop")],
            "supernet training (search images, half for the weights)": [
                self._row(f"{images // SUPERNET_SCALE:,} (reference)", default),
                self._row(f"{images:,}", f"images-{images}"),
                self._row(f"{images // SUPERNET_SCALE:,}, DARTS-PT selection (reference)",
                          "default-pt"),
                self._row(f"{images:,}, DARTS-PT selection", f"images-{images}-pt"),
                self._row(f"{images:,}, run to the end (no early stopping)",
                          f"images-{images}-nostop"),
                self._row(f"{images:,}, searched with the retraining module (ebnas_retrain)",
                          f"images-{images}-retrain_module"),
                self._row(f"random networks at the {images:,} rows' OPs",
                          *(f"images-{images}-random-{j}" for j in range(SUPERNET_RANDOM))),
                *(self._row(f"{name} at the {images:,} rows' OPs", f"images-{images}-{name}")
                  for name in SUPERNET_BASELINES)],
            **{family.title: self._family_rows(images, name)
               for name, family in FAMILIES.items()},
            f"the {images:,} rows at {self.exp.budget.budget_epochs[1]} epochs (budget check)": [
                self._row(f"{images:,}, alphas", f"images-{images}-long"),
                self._row(f"random networks of the {images:,} rows",
                          *(f"images-{images}-long-random-{j}" for j in range(LONG_RANDOM))),
                *(self._row(f"{name} at the {images:,} rows' OPs",
                            f"images-{images}-long-{name}") for name in SUPERNET_BASELINES),
                self._row("the block search's networks (block_search, seed 0)",
                          *(f"images-{images}-long-block_search-net-{search}"
                            for search in self.seeds)),
                self._row(f"the first {LONG_RANDOM} QuickNets of random blocks (seed 0; "
                          f"seeds 0-{UNIFORM_LONG_SEEDS - 1} where uniform_long ran)",
                          *(f"images-{images}-long-quicknet_ops-random-{j}"
                            for j in range(LONG_RANDOM))),
                self._row("the dilation search's networks (block_search_dilation, seed 0)",
                          *(f"images-{images}-long-block_search_dilation-net-{search}"
                            for search in self.seeds)),
                self._row(f"the first {LONG_RANDOM} random dilation patterns (seed 0)",
                          *(f"images-{images}-long-dilation-random-{j}"
                            for j in range(LONG_RANDOM))),
                self._row(f"the uniform search's networks (block_search_uniform, seeds "
                          f"0-{UNIFORM_LONG_SEEDS - 1})",
                          *(f"images-{images}-long-block_search_uniform-net-{search}"
                            for search in self.seeds)),
                self._row(f"{_template_text(NARROW_TEMPLATE)}: the uniform search's networks "
                          f"(block_search_uniform_narrow, seeds 0-{NARROW_LONG_SEEDS - 1})",
                          *(f"images-{images}-long-block_search_uniform_narrow-net-{search}"
                            for search in self.seeds)),
                self._row(f"{_template_text(NARROW_TEMPLATE)}: its first {LONG_RANDOM} "
                          "networks of random blocks",
                          *(f"images-{images}-long-narrow-random-{j}"
                            for j in range(LONG_RANDOM))),
                self._row(f"{_template_text(NARROW_TEMPLATE)}: QuickNet's block at every "
                          "position", f"images-{images}-long-narrow-quicknet")],
            f"fewer, wider binary ops per cell at the {images:,} rows' OPs (random networks)": [
                self._row(f"4 nodes, C = 8, stem 3C (the {images:,} rows' random networks)",
                          *(f"images-{images}-random-{j}" for j in range(SUPERNET_RANDOM))),
                *(self._row(f"{t['nodes']} nodes, C = {t['channels']}, stem "
                            f"{t['stem_multiplier']}C",
                            *(f"images-{images}-{name}-random-{j}"
                              for j in range(TEMPLATE_RANDOM)))
                  for name, t in TEMPLATES.items())],
            f"QuickNet's template with random blocks at the {images:,} rows' OPs": [
                *(self._row(f"{name} (its own block)", f"images-{images}-{name}")
                  for name in SUPERNET_BASELINES),
                self._row("random blocks of the binary space",
                          *(f"images-{images}-quicknet_ops-random-{j}"
                            for j in range(QUICKNET_OPS_RANDOM))),
                *(self._row(f"blocks searched ({name})", f"images-{images}-{name}")
                  for name in _row_template_searches()),
                *(self._row(f"blocks searched ({name}), every network x every seed",
                            *(f"images-{images}-{name}-net-{search}" for search in self.seeds))
                  for name in _row_template_searches()),
                self._row(f"RS-WS's best of {RSWS_CANDIDATES} ({RSWS_SEARCH}'s supernets), "
                          "every network x every seed",
                          *(f"images-{images}-rsws-net-{search}" for search in self.seeds)),
                self._row(f"block_search_uniform, validation's pick of its one-shot top "
                          f"{UNIFORM_TOPK}, every network x every seed",
                          *(f"images-{images}-uniform_topk-net-{search}"
                            for search in self.seeds)),
                self._row("random dilation patterns of QuickNet's block (its OPs)",
                          *(f"images-{images}-dilation-random-{j}"
                            for j in range(DILATION_RANDOM)))],
            f"{_template_text(NARROW_TEMPLATE)} at the {images:,} rows' OPs (width against "
            "depth)": self._narrow_rows(images),
        }
        lines = [f"Budget `{self.exp.budget.name}` on `{self.exp.budget.dataset}`, "
                 f"{self.exp.budget.seeds} seeds per row (`runs`: more where `--seeds` added "
                 "some, fewer where some have not run); `python experiments/ablations.py`.", ""]
        for title, rows in tables.items():
            lines += [f"### {title}", "", "| row | runs | test top-1 (mean ± std) | val top-1 | "
                      "every run (test %) | OPs | search s | search epochs run |",
                      "|---|---|---|---|---|---|---|---|"]
            for row in rows:
                ops = "-" if row["ops"] is None else f"{row['ops'][0] / 1e6:.3f}M"
                seconds = "-" if row["search_seconds"] is None else \
                    f"{row['search_seconds'][0]:.0f}"
                epochs = ", ".join(map(str, row["epochs_run"])) or "-"
                lines.append(f"| {row['row']} | {row['runs']} | {row['test_top1']} | "
                             f"{row['val_top1']} | {row['every_run']} | {ops} | {seconds} | "
                             f"{epochs} |")
            lines.append("")
        curves = {name: self._runs(label) for name, label in
                  (("ApproxSign", default), ("STE", "sign-ste"))}
        figures = [
            *self._figures(images, out),
            plot_curves({name: [r["search"]["curve"] for r in runs if r["search"]]
                         for name, runs in curves.items()}, out / "sign_search_loss.png",
                        key="train_loss", title="Search: supernet training loss per epoch",
                        y_label="train loss"),
            plot_curves({name: [r["train"]["curve"] for r in runs]
                         for name, runs in curves.items()}, out / "sign_train_loss.png",
                        key="loss", title="Retraining: training loss per epoch",
                        y_label="train loss"),
        ]
        pairs = self.early_stop_pairs()
        supernet_pairs = self.early_stop_pairs((f"images-{images}", f"images-{images}-nostop"))
        versus = self.supernet_versus_random(images)
        families = {name: self.family_versus_random(images, name) for name in FAMILIES}
        long = self.long_versus_random(images)
        templates = self.templates_versus_random(images)
        blocks = self.quicknet_ops_versus_random(images)
        dilation = self.dilation_versus_random(images)
        narrow = self.narrow_versus_random(images)
        narrow_long = self.narrow_versus_random(images, long=True)
        lines += self._versus_random_markdown(
            versus, f"Against the random networks at the {images:,} rows' OPs")
        lines += self._versus_random_markdown(
            long, f"At {self.exp.budget.budget_epochs[1]} epochs, against the random networks "
                  f"at the {images:,} rows' OPs")
        for name, rows in families.items():
            lines += self._versus_random_markdown(rows, FAMILIES[name].versus)
        lines += self._versus_random_markdown(
            templates, f"Random networks of fewer, wider cells against the {images:,} rows' "
                       "random networks (4 nodes, C = 8) at the same OPs")
        lines += self._versus_random_markdown(
            blocks, "QuickNet against QuickNets of random blocks (`random`: the random "
                    "baseline of a block-level search) at the same OPs")
        lines += self._versus_random_markdown(
            dilation, "QuickNet and the dilation search against QuickNets of random dilation "
                      "patterns (`random`: each block QuickNet's 3x3 block, plain or dilated; "
                      "all at QuickNet's OPs)")
        lines += self._versus_random_markdown(
            narrow, f"In {_template_text(NARROW_TEMPLATE)}, against its QuickNets of random "
                    "blocks (`random`), all in the same OPs window")
        lines += self._versus_random_markdown(
            narrow_long, f"At {self.exp.budget.budget_epochs[1]} epochs (seeds 0-"
                         f"{NARROW_LONG_SEEDS - 1}), in {_template_text(NARROW_TEMPLATE)}, "
                         f"against its first {LONG_RANDOM} QuickNets of random blocks")
        lines += self._random_blocks_markdown(images, QUICKNET_OPS_RECORD, "quicknet_ops-random",
                                              "random blocks")
        lines += self._random_blocks_markdown(images, DILATION_RECORD, "dilation-random",
                                              "random dilation patterns")
        lines += self._random_blocks_markdown(images, NARROW_RECORD, "narrow-random",
                                              "random blocks")
        for name in BLOCK_SEARCHES:
            lines += self._block_search_markdown(images, name)
        oneshot = self.oneshot_rankings(images)
        agreement = {"template": self.retraining_agreement(),
                     "dilation sub-space": self.retraining_agreement(DILATION_OPS),
                     _template_text(NARROW_TEMPLATE): self.retraining_agreement(
                         networks=self._read_narrow_networks())}
        lines += self._oneshot_markdown(oneshot, agreement)
        lines += self._narrow_oneshot_markdown(images)
        lines += self._rsws_markdown(images)
        lines += self._uniform_topk_markdown(images)
        lines += self._pairs_markdown(pairs, "reference searches")
        lines += self._pairs_markdown(supernet_pairs, f"searches on {images:,} images")
        lines += ["Figures: " + ", ".join(f"[{p.name}]({p.name})" for p in figures)]
        atomic_write_json(out / "results.json", {**tables, "early_stop_pairs": pairs,
                                                 "supernet_early_stop_pairs": supernet_pairs,
                                                 "supernet_versus_random": versus,
                                                 "long_versus_random": long,
                                                 "templates_versus_random": templates,
                                                 "quicknet_ops_versus_random": blocks,
                                                 "dilation_versus_random": dilation,
                                                 "narrow_versus_random": narrow,
                                                 "narrow_long_versus_random": narrow_long,
                                                 "oneshot_rankings": oneshot,
                                                 "retraining_agreement": agreement,
                                                 **{f"{name}_versus_random": rows
                                                    for name, rows in families.items()}})
        atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
        print("\n".join(lines), flush=True)
        return tables

    def _read_oneshot_networks(self) -> list:
        """ONESHOT_RECORD's networks, read (the report draws nothing): [] before it exists."""
        path = self.exp.results_dir / ONESHOT_RECORD
        return json.loads(path.read_text())["networks"] if path.is_file() else []

    def _read_narrow_networks(self) -> list:
        """narrow_labelled's networks as ONESHOT_RECORD's are written (ops, labels), read:
        [] before the narrow record and every narrow search exist."""
        searches = [f"{self.supernet_label()}-{NARROW_SEARCH}_search-{search}"
                    for search in self.seeds]
        if not (self.exp.results_dir / NARROW_RECORD).is_file() or any(
                self.exp.cached(key) is None for key in searches):
            return []
        return [{"block_ops": ops, "labels": [label]} for label, ops in self.narrow_labelled()]

    def _ranked_networks(self) -> dict:
        """Search name -> the retrained networks its one-shot rankings rank (read)."""
        oneshot = self._read_oneshot_networks()
        return {**{name: oneshot for name in ONESHOT_SEARCHES},
                NARROW_SEARCH: self._read_narrow_networks()}

    def _retrained_means(self, networks: list) -> dict:
        """Network (its ops, a tuple) -> mean test top-1 over every run of every label it
        was retrained under, for `networks` (entries of ONESHOT_RECORD's form)."""
        means = {}
        for network in networks:
            stats = mean_std([r["train"]["test_top1"] for label in network["labels"]
                              for r in self._runs(label)])
            if stats:
                means[tuple(network["block_ops"])] = stats[0]
        return means

    def retraining_agreement(self, space=None, networks=None) -> list:
        """The ceiling of any ranking's agreement with retraining: Kendall tau between two
        seeds' retrainings of `networks` (default: ONESHOT_RECORD's) of ops within `space`
        (all: None) that have both, for each pair of seeds (the first label's run of each)."""
        from experiments.report import kendall_tau

        by_seed = []
        for network in self._read_oneshot_networks() if networks is None else networks:
            if space is None or set(network["block_ops"]) <= set(space):
                runs = {r["seed"]: r["train"]["test_top1"]
                        for r in self._runs(network["labels"][0])}
                by_seed.append(runs)
        rows = []
        for first, second in itertools.combinations(self.seeds, 2):
            pairs = [(runs[first], runs[second]) for runs in by_seed
                     if runs.get(first) is not None and runs.get(second) is not None]
            if len(pairs) >= 2:
                rows.append({"seeds": (first, second), "networks": len(pairs),
                             "tau": kendall_tau(*zip(*pairs))})
        return rows

    def oneshot_rankings(self, images: int) -> list:
        """Per ranked supernet: Kendall tau between its one-shot top-1 and the retrained mean
        of the networks it ranked, what its one-shot best retrains to, where it ranks the
        best retrained network."""
        from experiments.report import kendall_tau

        rows = []
        for name, networks in self._ranked_networks().items():
            means = self._retrained_means(networks)
            for search in self.seeds:
                unit = self.exp.cached(f"images-{images}-{name}_oneshot-{search}")
                if unit is None:
                    continue
                ranked = [(entry["oneshot_top1"], means[tuple(entry["block_ops"])])
                          for entry in unit["result"]["ranking"]
                          if tuple(entry["block_ops"]) in means]
                if len(ranked) < 2:
                    continue
                oneshot, retrained = zip(*ranked)
                best_retrained = max(range(len(ranked)), key=lambda i: retrained[i])
                rows.append({"search": f"{name} {search}", "networks": len(ranked),
                             "tau": kendall_tau(oneshot, retrained),
                             "oneshot_range": (min(oneshot), max(oneshot)),
                             "oneshot_best_retrained": retrained[0],
                             "retrained_best": max(retrained),
                             "retrained_best_rank": 1 + best_retrained})
        return rows

    def blocks_points(self, images: int) -> dict:
        """(OPs, test top-1) of every retraining in QuickNet's template at the row's OPs, by
        group: the random blocks, QuickNet, the softmax, Gumbel and uniform searches' networks,
        RS-WS's and validation's picks."""
        label = f"images-{images}"
        groups = {
            "random": [f"{label}-quicknet_ops-random-{j}" for j in range(QUICKNET_OPS_RANDOM)],
            **{name: [f"{label}-{name}"] for name in SUPERNET_BASELINES},
            **{name: [f"{label}-{name}-net-{search}" for search in self.seeds]
               for name in ("block_search", "block_search_gumbel", "block_search_uniform")},
            "rsws": [f"{label}-rsws-net-{search}" for search in self.seeds],
            "uniform_topk": [f"{label}-uniform_topk-net-{search}" for search in self.seeds]}
        return self._points(groups)

    def narrow_points(self, images: int) -> dict:
        """(OPs, test top-1) of every retraining in the narrow template (its random blocks,
        QuickNet's block, the uniform search), beside QuickNet and the uniform search in the
        row's template."""
        label, name = f"images-{images}", "block_search_uniform"
        return self._points({
            "random": [f"{label}-narrow-random-{j}" for j in range(NARROW_RANDOM)],
            **{baseline: [f"{label}-{baseline}"] for baseline in SUPERNET_BASELINES},
            name: [f"{label}-{name}-net-{search}" for search in self.seeds],
            "QuickNet's block, narrow": [f"{label}-narrow-quicknet"],
            f"{name}_narrow": [f"{label}-{name}_narrow-net-{search}" for search in self.seeds]})

    def _points(self, groups: dict) -> dict:
        """Group -> (OPs, test top-1) of every run of its labels."""
        return {name: [(r["train"].get("ops"), r["train"]["test_top1"])
                       for key in keys for r in self._runs(key)]
                for name, keys in groups.items()}

    def oneshot_points(self) -> dict:
        """(one-shot top-1 in %, retrained mean) of each retrained network that search 0's
        supernet of each ranking search (ONESHOT_SEARCHES', the narrow one) ranked, by name."""
        groups = {}
        for name, networks in self._ranked_networks().items():
            means = self._retrained_means(networks)
            unit = self.exp.cached(f"{self.supernet_label()}-{name}_oneshot-{self.seeds[0]}")
            groups[name] = [] if unit is None else [
                (100 * entry["oneshot_top1"], means[tuple(entry["block_ops"])])
                for entry in unit["result"]["ranking"] if tuple(entry["block_ops"]) in means]
        return groups

    def _figures(self, images: int, out: pathlib.Path) -> list:
        from experiments.report import scatter_runs

        return [scatter_runs(self.blocks_points(images), out / "blocks_versus_random.png",
                             title=f"QuickNet's template at the {images:,} rows' OPs: every "
                             "retraining", log_x=False),
                scatter_runs(self.narrow_points(images), out / "narrow_versus_random.png",
                             title=f"{_template_text(NARROW_TEMPLATE)}: every retraining",
                             log_x=False),
                scatter_runs(self.oneshot_points(), out / "oneshot_versus_retrained.png",
                             title="One-shot top-1 (search 0's supernet) against the "
                             "retrained mean", x_label="one-shot top-1 (%)",
                             y_label="retrained test top-1, mean over seeds (%)", log_x=False,
                             count="networks")]

    @staticmethod
    def _oneshot_markdown(rows: list, agreement: dict) -> list:
        if not rows:
            return []
        lines = ["One-shot ranking: each block search's supernet ranks the networks of its "
                 "template retrained with every seed (`tools/rank_blocks.py`: each block's op "
                 "alone, the supernet's weights, the search's architecture half) against their "
                 "retrained means (test):", "",
                 "| supernet | networks | Kendall tau | one-shot top-1 (range) | its one-shot "
                 "best retrains to | best retrained | one-shot rank of the best retrained |",
                 "|---|---|---|---|---|---|---|"]
        for row in rows:
            low, high = row["oneshot_range"]
            lines.append(f"| {row['search']} | {row['networks']} | {row['tau']:+.2f} | "
                         f"{100 * low:.1f}-{100 * high:.1f}% | "
                         f"{percent(row['oneshot_best_retrained'])} | "
                         f"{percent(row['retrained_best'])} | {row['retrained_best_rank']} |")
        lines += ["", "The ceiling: retraining against itself, one seed's test top-1 against "
                  "another's over the same networks (a ranking cannot agree with the retrained "
                  "means much better than two retrainings agree with each other):", "",
                  "| networks of | seeds | networks | Kendall tau |", "|---|---|---|---|"]
        for space, seed_rows in agreement.items():
            lines += [f"| {space} | {row['seeds'][0]} vs {row['seeds'][1]} | "
                      f"{row['networks']} | {row['tau']:+.2f} |" for row in seed_rows]
        return lines + [""]

    def _narrow_oneshot_markdown(self, images: int) -> list:
        """Each network retrained in NARROW_TEMPLATE: its parameter-free blocks, its one-shot
        top-1 under each narrow search's supernet and its retrained mean (is the one-shot
        ranking's disagreement noise, or do all the supernets prefer the same networks?)."""
        from experiments.report import kendall_tau
        from ubnas_tf.search_space.binary import PARAMETER_FREE

        rankings = [self.exp.cached(f"images-{images}-{NARROW_SEARCH}_oneshot-{search}")
                    for search in self.seeds]
        networks = self._read_narrow_networks()
        if not networks or None in rankings:
            return []
        oneshot = [{tuple(e["block_ops"]): e["oneshot_top1"] for e in unit["result"]["ranking"]}
                   for unit in rankings]
        lines = [f"The networks of {_template_text(NARROW_TEMPLATE)}, by each narrow search's "
                 "supernet (one-shot top-1) and by retraining (test top-1, mean over seeds):",
                 "", "| network | parameter-free blocks | " + " | ".join(
                     f"one-shot, supernet {search}" for search in self.seeds)
                 + " | retrained (mean) |", "|---|---|" + "---|" * len(self.seeds) + "---|"]
        means = self._retrained_means(networks)
        for network in networks:
            ops, [label] = tuple(network["block_ops"]), network["labels"]
            shown = " | ".join(f"{100 * ranked[ops]:.1f}%" if ops in ranked else "-"
                               for ranked in oneshot)
            lines.append(f"| {label.removeprefix(f'images-{images}-')} | "
                         f"{sum(op in PARAMETER_FREE for op in ops)} | {shown} | "
                         f"{percent(means[ops]) if ops in means else '-'} |")
        agreement = [f"{first} vs {second} {kendall_tau(*zip(*pairs)):+.2f}"
                     for first, second in itertools.combinations(range(len(oneshot)), 2)
                     if len(pairs := [(oneshot[first][ops], oneshot[second][ops])
                                      for ops in oneshot[first] if ops in oneshot[second]]) > 1]
        return lines + ["", "The supernets against each other over the networks both ranked "
                        "(Kendall tau): " + ", ".join(agreement) + ".", ""]

    def _rsws_markdown(self, images: int) -> list:
        """Each RS-WS ranking's best three networks and what the best retrained to."""
        lines = []
        for search in self.seeds:
            unit = self.exp.cached(f"images-{images}-rsws_rank-{search}")
            if unit is None:
                continue
            if not lines:
                lines = [f"Random search with weight sharing ({RSWS_CANDIDATES} networks drawn in "
                         f"the window, ranked by each {RSWS_SEARCH} supernet; the best "
                         "retrained with every seed):", "",
                         "| search | one-shot best three (blocks: one-shot top-1) | best's "
                         "OPs | best retrained (mean over seeds) |", "|---|---|---|---|"]
            ranking = unit["result"]["ranking"]
            best = "; ".join(f"{_blocks_text(e['block_ops'])}: "
                             f"{100 * e['oneshot_top1']:.1f}%" for e in ranking[:3])
            retrained = mean_std([r["train"]["test_top1"]
                                  for r in self._runs(f"images-{images}-rsws-net-{search}")])
            lines.append(f"| {search} | {best} | {ranking[0]['ops'] / 1e6:.3f}M | "
                         f"{percent(retrained[0]) if retrained else '-'} |")
        return lines + [""] if lines else []

    def _uniform_topk_markdown(self, images: int) -> list:
        """Each uniform search's one-shot top UNIFORM_TOPK, their selection runs' val_top1,
        the pick and what it retrained to."""
        lines = []
        for search in self.seeds:
            rank = self.exp.cached(f"images-{images}-uniform_rank-{search}")
            if rank is None:
                continue
            if not lines:
                lines = [f"Validation's pick among the uniform search's one-shot top "
                         f"{UNIFORM_TOPK} (each trained once with seed {SELECTION_SEED}, "
                         "selected by val top-1; the pick retrained with every seed; `same`: "
                         "the ranking run again put the search's own blocks first):", "",
                         "| search | one-shot rank | blocks | one-shot top-1 | OPs | val top-1 "
                         f"(seed {SELECTION_SEED}) | retrained (mean over seeds) |",
                         "|---|---|---|---|---|---|---|"]
            searched = self.exp.cached(
                f"images-{images}-block_search_uniform_search-{search}")
            ranking = rank["result"]["ranking"][:UNIFORM_TOPK]
            units = [self.exp.cached(self._selection_key(search, j))
                     for j in range(len(ranking))]
            vals = [unit["result"]["val_top1"] if unit else None for unit in units]
            picked = None if None in units else _pick(vals)
            retrained = mean_std([r["train"]["test_top1"] for r in
                                  self._runs(f"images-{images}-uniform_topk-net-{search}")])
            for j, entry in enumerate(ranking):
                same = searched and j == 0 and \
                    searched["result"]["blocks"]["ops"] == entry["block_ops"]
                lines.append(
                    f"| {search} | {j + 1}{' (same)' if same else ''} | "
                    f"{_blocks_text(entry['block_ops'])} | "
                    f"{100 * entry['oneshot_top1']:.1f}% | {entry['ops'] / 1e6:.3f}M | "
                    f"{percent(vals[j])}"
                    f"{' (pick)' if j == picked else ''} | "
                    f"{percent(retrained[0]) if j == picked and retrained else ''} |")
        return lines + [""] if lines else []

    @staticmethod
    def _pairs_markdown(pairs: list, searches: str) -> list:
        if not pairs:
            return []
        # Epochs, not seconds, measure the saving: the two searches' wall times were taken
        # under whatever else ran on the machine.
        lines = [f"Early stopping, the same search (seed) with and without it ({searches}):", "",
                 "| seed | rule that fired | epochs (stopped / full) | epochs saved | "
                 "search s, wall (stopped / full) | same genotype | test top-1 (stopped / full) |",
                 "|---|---|---|---|---|---|---|"]
        for pair in pairs:
            (stopped, full), seconds = pair["epochs"], pair["seconds"]
            lines.append(
                f"| {pair['seed']} | {pair['rule'] or 'none'} | {stopped} / {full} | "
                f"{full - stopped} ({100 * (full - stopped) / full:.0f}%) | "
                f"{seconds[0]:.0f} / {seconds[1]:.0f} | "
                f"{'yes' if pair['same_genotype'] else 'no'} | "
                f"{percent(pair['test_top1'][0])} / {percent(pair['test_top1'][1])} |")
        return lines + [""]


def _pick(vals: list) -> int:
    """The index of the highest validation top-1 (ties: the lower index, the better one-shot
    rank; None, a diverged run, is never picked)."""
    return max(range(len(vals)), key=lambda j: (-1.0 if vals[j] is None else vals[j], -j))


def _row_template_searches() -> list:
    """The block searches in the row's QuickNet template (none of BLOCK_TEMPLATES)."""
    return [name for name in BLOCK_SEARCHES if name not in BLOCK_TEMPLATES]


def _template_text(settings: dict) -> str:
    """"widths [16, 32, 64] x blocks [2, 2, 2]" for a table."""
    return f"widths {settings['filters']} x blocks {settings['blocks']}"


def _blocks_text(ops: list) -> str:
    """A network's blocks for a table: "conv_3x3, avg_pool_3x3, ..."."""
    return ", ".join(op.replace("bin_", "") for op in ops)


def make(budget_name: str, output_dir, work_dir, reuse=(), seeds=None) -> Ablations:
    return Ablations(protocol.Experiment(protocol.BUDGETS[budget_name], output_dir, work_dir,
                                         reuse=reuse), seeds=seeds)


def main(argv):
    del argv
    ablations = make(FLAGS.budget, FLAGS.output_dir, FLAGS.work_dir, FLAGS.reuse, FLAGS.seeds)
    protocol.run_stage(ablations.exp, ablations.stages(), FLAGS.stage, ablations.report)


if __name__ == "__main__":
    cli.run(main)
