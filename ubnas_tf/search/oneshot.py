"""One-shot evaluation of block networks: their accuracy with a finished block search's weights.

Random search with weight sharing (Li & Talwalkar, "Random Search and Reproducibility for
NAS", UAI 2019) ranks candidate networks by the accuracy they reach with the trained
supernet's weights, each block running its chosen op alone (a single path), and retrains the
best; it matched DARTS on CIFAR-10 there. The same measurement tells whether a supernet can
rank networks at all: compare its ranking with the retrained networks' (Kendall tau).

    from ubnas_tf.search import oneshot
    ranker = oneshot.OneShotRanker.from_search_dir("runs/blocks")
    accuracy = ranker.accuracy(["bin_conv_3x3"] * 6)

Evaluated on the search's architecture half (unaugmented, in index order: the same images for
every network, so differences between networks are paired). BatchNorm normalises with each
evaluation batch's statistics: the moving statistics were gathered under the softmax mixture
(or other sampled paths), not under the single path evaluated, and SPOS (Guo et al., ECCV 2020)
recalibrates them per candidate for the same reason. Candidates are drawn as the random
baseline's networks are: each block's op uniform over the search's ops, kept if the network's
OPs are in the budget's window (exact OPs from the search's `BlockCostModel`), distinct.
"""
from __future__ import annotations

import itertools
import json
import pathlib
import time

import numpy as np
import tensorflow as tf

from ubnas_tf import config as config_lib
from ubnas_tf.errors import UserError
from ubnas_tf.io_utils import atomic_write_json
from ubnas_tf.search.block_architect import BlockCostModel
from ubnas_tf.search.block_supernet import BlockSupernet

__all__ = ["OneShotRanker", "draw_candidates", "rank_blocks", "write_ranking", "EVAL_BATCH",
           "RANKING_NAME"]

EVAL_BATCH = 500  # images per evaluation batch: BatchNorm's batch statistics come from these
RANKING_NAME = "ranking.json"
ENUMERATE_UP_TO = 4096  # spaces this small are listed whole, then sampled without replacement


def draw_candidates(cost_model: BlockCostModel, count: int, *, target: float | None,
                    tolerance: float, seed: int = 0, max_tries: int = 100_000) -> list:
    """Up to `count` distinct networks (op names per block) drawn uniformly among those whose
    OPs are within `tolerance` of `target` (any OPs when None): every one of them when the
    window holds no more than `count`."""
    rng = np.random.default_rng(seed)
    blocks, ops = cost_model.costs.shape

    def inside(columns) -> bool:
        return target is None or \
            abs(cost_model.columns_ops(columns) - target) <= tolerance * target

    def named(columns) -> list:
        return [cost_model.primitives[c] for c in columns]

    if ops ** blocks <= ENUMERATE_UP_TO:
        window = [c for c in itertools.product(range(ops), repeat=blocks) if inside(c)]
        if len(window) > count:
            window = [window[i] for i in rng.choice(len(window), size=count, replace=False)]
        return [named(c) for c in window]
    seen, kept = set(), []
    for _ in range(max_tries):
        columns = tuple(int(c) for c in rng.integers(ops, size=blocks))
        if columns not in seen and inside(columns):
            seen.add(columns)
            kept.append(named(columns))
            if len(kept) == count:
                return kept
    raise UserError(f"only {len(kept)} distinct networks within {tolerance:.0%} of "
                    f"{target:,.0f} OPs in {max_tries:,} draws, {count} asked for: ask for "
                    "fewer candidates")


class OneShotRanker:
    """A finished block search's supernet (weights restored) and its architecture half."""

    def __init__(self, supernet: BlockSupernet, cost_model: BlockCostModel, config: dict,
                 batches: list):
        self.supernet, self.cost_model, self.config = supernet, cost_model, config
        self.batches = batches
        self.images = sum(int(labels.shape[0]) for _, labels in batches)

    @classmethod
    def from_search_dir(cls, search_dir, *, max_images: int | None = None, data_dir=None,
                        manual_dir=None) -> "OneShotRanker":
        """The supernet of the last checkpoint in `search_dir` (a tools/search_blocks.py
        output folder) and the first `max_images` of its architecture half (all: None)."""
        from ubnas_tf.search.config import seeded_search_data

        search_dir = pathlib.Path(search_dir)
        config, dataset = _search_config(search_dir)
        # The data exactly as the search loaded it (its split, its skipped files).
        data, _ = seeded_search_data(config, dataset, data_dir, manual_dir)
        supernet = BlockSupernet.from_config(data.info, config)
        ops = len(supernet.primitives)
        supernet.build_variables(tf.fill([supernet.block_count, ops], 1.0 / ops))
        _restore_supernet(supernet, search_dir)
        return cls.on_architecture_half(supernet, BlockCostModel.from_config(data.info, config),
                                        config, data, max_images)

    @classmethod
    def on_architecture_half(cls, supernet, cost_model, config, data,
                             max_images: int | None = None) -> "OneShotRanker":
        """A ranker of `supernet` on the first `max_images` (all: None) of the architecture
        half of `data` as the search `config` cut it."""
        batches = list(data.search_half_batches(EVAL_BATCH, half="architecture",
                                                portion=config["data"]["portion"],
                                                seed=config["seed"], max_examples=max_images))
        return cls(supernet, cost_model, config, batches)

    def check_network(self, block_ops) -> None:
        """A one-line error unless `block_ops` names one of this search's ops per block."""
        net = self.supernet
        if len(block_ops) != net.block_count:
            raise UserError(f"a network of this search has {net.block_count} blocks, got "
                            f"{len(block_ops)} ops")
        unknown = [name for name in block_ops if name not in net.primitives]
        if unknown:
            raise UserError(f"op(s) {', '.join(unknown)} are not among this search's ops "
                            f"({', '.join(net.primitives)})")

    def logits(self, block_ops, images) -> tf.Tensor:
        """The single-path network `block_ops` (one op name per block) on `images`."""
        self.check_network(block_ops)

        def single_op(index, x):
            block = self.supernet.mixed_blocks[index]
            return block.candidate_ops[block.primitives.index(block_ops[index])](x, training=True)

        return self.supernet.around_blocks(images, single_op, training=True)

    def accuracy(self, block_ops) -> float:
        """Top-1 of `block_ops` with the supernet's weights on the evaluation images."""
        correct = 0
        for images, labels in self.batches:
            predicted = tf.argmax(self.logits(block_ops, images), axis=-1, output_type=tf.int32)
            correct += int(tf.reduce_sum(tf.cast(predicted == labels, tf.int32)))
        return correct / self.images

    def network_ops(self, block_ops) -> int:
        return round(self.cost_model.network_ops(block_ops))

    def rank(self, networks=None, *, candidates: int = 100, seed: int = 0,
             print_fn=print) -> dict:
        """One-shot top-1 of `networks` (lists of op names), or of `candidates` networks drawn
        in the search's OPs window from `seed`, best first (every network checked first)."""
        started = time.time()
        budget = self.config["ops_budget"]
        drawn = networks is None
        if drawn:
            networks = draw_candidates(self.cost_model, candidates, target=budget["target"],
                                       tolerance=budget["tolerance"], seed=seed)
        for block_ops in networks:
            self.check_network(block_ops)
        scored = []
        for index, block_ops in enumerate(networks):
            scored.append({"block_ops": list(block_ops), "ops": self.network_ops(block_ops),
                           "oneshot_top1": round(self.accuracy(block_ops), 6)})
            print_fn(f"[{index + 1}/{len(networks)}] {scored[-1]['oneshot_top1']:.4f} "
                     f"{', '.join(block_ops)}")
        return {"images": self.images,
                "drawn": {"count": candidates, "seed": seed} if drawn else None,
                "template": {k: self.config["template"][k] for k in ("filters", "blocks")},
                # Stable: equal accuracies keep the order given (or drawn).
                "ranking": sorted(scored, key=lambda entry: -entry["oneshot_top1"]),
                "seconds": round(time.time() - started, 2)}


def _search_config(search_dir: pathlib.Path) -> tuple[dict, str]:
    """The saved config and dataset of a block search folder, or a one-line error."""
    config_path, run_path = search_dir / "config.yaml", search_dir / "run.json"
    if not config_path.is_file() or not run_path.is_file():
        raise UserError(f"{search_dir} is not a block search's folder (no config.yaml and "
                        "run.json): pass the --output_dir of tools/search_blocks.py")
    config = config_lib.load("search_blocks", [config_path])
    return config, json.loads(run_path.read_text())["dataset"]


def _restore_supernet(supernet: BlockSupernet, search_dir: pathlib.Path) -> None:
    latest = tf.train.latest_checkpoint(str(search_dir / "checkpoints"))
    if latest is None:
        raise UserError(f"{search_dir / 'checkpoints'} holds no checkpoint: the search has not "
                        "finished an epoch; run it (or resume it) first")
    # Only the supernet's weights: the architect and optimizers stay in the file.
    tf.train.Checkpoint(supernet=supernet).restore(latest).expect_partial() \
        .assert_existing_objects_matched()


def rank_blocks(search_dir, output_dir, *, networks=None, candidates: int = 100, seed: int = 0,
                max_images: int | None = None, data_dir=None, manual_dir=None,
                print_fn=print) -> dict:
    """One-shot top-1 of `networks` (lists of op names), or of `candidates` networks drawn in
    the search's OPs window from `seed`, best first, written to output_dir/ranking.json."""
    started = time.time()
    search_dir, output_dir = pathlib.Path(search_dir), pathlib.Path(output_dir)
    if output_dir.resolve() == search_dir.resolve():
        raise UserError("--output_dir is the search's own folder: pass another one")
    ranker = OneShotRanker.from_search_dir(search_dir, max_images=max_images,
                                           data_dir=data_dir, manual_dir=manual_dir)
    record = {"search_dir": str(search_dir),
              **ranker.rank(networks, candidates=candidates, seed=seed, print_fn=print_fn)}
    record["seconds"] = round(time.time() - started, 2)  # the restore and data included
    write_ranking(record, output_dir / RANKING_NAME, print_fn)
    return record


def write_ranking(record: dict, path: pathlib.Path, print_fn=print) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)
    best = record["ranking"][0]
    print_fn(f"best: {', '.join(best['block_ops'])} ({best['oneshot_top1']:.4f} one-shot, "
             f"{best['ops']:,} OPs) of {len(record['ranking'])}, written to {path}")
