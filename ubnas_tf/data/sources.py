"""Where images come from: the reader behind each dataset `spec` (IDX files and the shipped
demo here; folders in `folder`, TFDS names in `tfds_source`).

A `Source` (`splits`) holds a train and a test split of uint8 images with int32 labels, in a
fixed order. Array and file splits are read by index, so shuffling and the search split permute
indices, never images; a stream is read in order and cut by a mask over positions.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from ubnas_tf.data.idx import read_idx_folder
from ubnas_tf.data.info import FASHION_MNIST_CLASS_NAMES, KNOWN_STATISTICS
from ubnas_tf.data.splits import ArraySplit, Source, subset_indices
from ubnas_tf.errors import UserError

__all__ = ["DEMO_DIR", "FASHION_MNIST_LOCAL_DIR", "open_idx", "open_source"]

DEMO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo")
# Debian's dataset-fashion-mnist package installs the four IDX files here.
FASHION_MNIST_LOCAL_DIR = "/usr/share/datasets/fashion-mnist"


def open_idx(
    folder: str,
    *,
    name: str,
    max_examples: int | None,
    seed: int,
    max_test_examples: int | None = None,
    class_names: tuple[str, ...] | None = None,
    flip_default: bool = False,
    statistics: tuple | None = None,
) -> Source:
    """A Source over the four MNIST-format files of `folder`.

    Flipping is off by default because the IDX format mostly carries digits (MNIST, EMNIST),
    which a mirror turns into other symbols; Fashion-MNIST turns it back on.
    """
    splits = read_idx_folder(folder)
    num_classes = 1 + max(int(labels.max()) for _, labels in splits.values())
    if class_names is None:
        class_names = tuple(str(label) for label in range(num_classes))
    elif num_classes > len(class_names):
        raise UserError(
            f"labels in {folder} go up to {num_classes - 1} but {name} has "
            f"{len(class_names)} classes; use the matching IDX files"
        )
    train, test = (
        ArraySplit(*splits[split]).take(subset_indices(len(splits[split][1]), cap, seed))
        for split, cap in (("train", max_examples), ("test", max_test_examples))
    )
    return Source(
        name=name,
        class_names=class_names,
        train=train,
        test=test,
        image_shape=train.image_shape,
        statistics=statistics,
        flip_default=flip_default,
    )


def open_source(
    spec: str,
    *,
    data_dir: str | None,
    manual_dir: str | None,
    max_examples: int | None,
    seed: int,
    skip_corrupt: bool,
    input_size: tuple[int, int] | None,
    max_test_examples: int | None = None,
) -> Source:
    """Reads the dataset named by `spec` (see `ubnas_tf.data.load_dataset`): `max_examples`
    caps the training split, `max_test_examples` the test split."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(
            "no dataset given; pass a TFDS name, folder:PATH, idx:PATH, fashion_mnist_local "
            "or demo"
        )
    spec = spec.strip()
    # Fashion-MNIST's own statistics, not those of whatever subset max_examples (and the
    # validation hold-out) leave: a model trained on a subset is then normalised as
    # tools/evaluate.py normalises its inputs (issue 18.12).
    fashion = dict(class_names=FASHION_MNIST_CLASS_NAMES, flip_default=True,
                   max_test_examples=max_test_examples,
                   statistics=KNOWN_STATISTICS["fashion_mnist"])
    if spec == "demo":
        return open_idx(DEMO_DIR, name=spec, max_examples=max_examples, seed=seed, **fashion)
    if spec == "fashion_mnist_local":
        return open_idx(
            FASHION_MNIST_LOCAL_DIR, name=spec, max_examples=max_examples, seed=seed, **fashion
        )
    kind, _, path = spec.partition(":")
    if kind in ("idx", "folder"):
        if not path:
            raise UserError(f"{spec!r} names no folder; write {kind}:PATH")
        path = os.path.abspath(os.path.expanduser(path))
        if kind == "idx":
            return open_idx(path, name=spec, max_examples=max_examples, seed=seed,
                            max_test_examples=max_test_examples)
        from ubnas_tf.data.folder import open_folder

        return open_folder(
            path,
            name=spec,
            max_examples=max_examples,
            max_test_examples=max_test_examples,
            seed=seed,
            skip_corrupt=skip_corrupt,
            input_size=input_size,
        )
    # TFDS is imported only here: it is slow to import and the local routes do not need it.
    from ubnas_tf.data.tfds_source import open_tfds

    return open_tfds(spec, data_dir=data_dir, manual_dir=manual_dir, max_examples=max_examples,
                     max_test_examples=max_test_examples)
