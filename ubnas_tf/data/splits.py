"""The shared types of the data layer: a dataset's splits as read, before any pipeline.

A split is one of:

- `ArraySplit`: every image in memory (IDX files, the shipped demo, small folders, small TFDS
  datasets). The arrays *are* the cache.
- `FileSplit`: image files decoded on the fly (folders too large for memory).
- `StreamSplit`: a `tf.data` stream read in order (TFDS datasets too large for memory).

Every reader (`sources`, `folder`, `tfds_source`) and the pipeline import these from here, and
nothing here imports a reader: the data layer has no import circle.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf

from ubnas_tf.errors import UserError

__all__ = ["ArraySplit", "FileSplit", "StreamSplit", "Source", "MEMORY_BUDGET_BYTES",
           "subset_indices", "holdout_indices", "hold_out", "select_positions"]

# Splits whose decoded images fit in this many bytes are held in memory (issue 3: "cached where
# it fits"); larger ones are read from disk each epoch.
MEMORY_BUDGET_BYTES = 1 << 30



def subset_indices(size: int, max_examples: int | None, seed: int) -> np.ndarray | None:
    """The first `max_examples` of a seeded permutation of ``range(size)``, or None for all."""
    if max_examples is None or max_examples >= size:
        return None
    return np.random.default_rng(seed).permutation(size)[:max_examples]


# Mixed into the hold-out's seed, so that the held-out images do not line up with the
# `max_examples` subset (drawn from the same run seed) or with the search's split.
_HOLDOUT_SEED_TAG = 0x401D


def holdout_indices(labels, fraction: float, seed: int, *,
                    what: str = "data.validation_fraction") -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held_out)``: sorted positions of a class-stratified, seeded hold-out.

    ``round(fraction * N)`` examples are held out, each class giving its share rounded by
    largest remainder (so every class is held out in proportion, within one example), chosen
    by a permutation of each class seeded by `seed`: the same seed and labels give the same
    hold-out on every run and machine (NumPy's PCG64). `labels` may be None (a stream whose
    function is the hold-out of both retraining (its validation split) and tuning
    (`ubnas_tf.tune.data`). `what` names the setting in the error message.
    """
    labels = np.asarray(labels)
    size = len(labels)
    held = int(round(float(fraction) * size))
    if held < 1 or held >= size:
        raise UserError(f"{what}={fraction} of {size} training examples leaves an empty "
                        "split: use a share nearer 0.1-0.2, or more examples")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _HOLDOUT_SEED_TAG])
    classes, counts = np.unique(labels, return_counts=True)
    shares = counts * held / size
    per_class = np.floor(shares).astype(int)
    # Largest remainder: the classes with the largest fractional shares give one more.
    order = np.argsort(-(shares - per_class), kind="stable")
    per_class[order[:held - per_class.sum()]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == label))[:count]
              for label, count in zip(classes, per_class)]
    held_out = np.sort(np.concatenate(chosen))
    return np.setdiff1d(np.arange(size), held_out), held_out


def select_positions(dataset: tf.data.Dataset, size: int, indices) -> tf.data.Dataset:
    """The examples of a stream of `size` at the positions `indices`, in stream order."""
    mask = np.zeros(size, dtype=bool)
    mask[np.asarray(indices)] = True
    mask = tf.constant(mask)
    dataset = dataset.enumerate().filter(lambda position, example: tf.gather(mask, position))
    return dataset.map(lambda position, example: example)


@dataclasses.dataclass
class ArraySplit:
    """A split held in memory: uint8 images ``[N, H, W, C]`` and int32 labels ``[N]``."""

    images: np.ndarray
    labels: np.ndarray
    _tensors: tuple | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.images.shape[1:])

    def take(self, indices: np.ndarray | None) -> "ArraySplit":
        return self if indices is None else ArraySplit(self.images[indices], self.labels[indices])

    def fetch(self, index: tf.Tensor):
        """``(image, label)`` at `index`; the arrays become tensors once, shared by pipelines."""
        if self._tensors is None:
            # Eager tensors, made outside the tf.data function being traced, so that every
            # pipeline captures the same memory instead of embedding a copy in its graph.
            with tf.init_scope():
                self._tensors = (tf.constant(self.images), tf.constant(self.labels))
        images, labels = self._tensors
        return tf.gather(images, index), tf.gather(labels, index)


@dataclasses.dataclass
class FileSplit:
    """A split of image files (already checked to decode), decoded when read."""

    paths: np.ndarray
    labels: np.ndarray
    channels: int
    _tensors: tuple | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple:
        return (None, None, self.channels)

    def take(self, indices: np.ndarray | None) -> "FileSplit":
        if indices is None:
            return self
        return FileSplit(self.paths[indices], self.labels[indices], self.channels)

    def fetch(self, index: tf.Tensor):
        if self._tensors is None:
            with tf.init_scope():  # eager, as in ArraySplit.fetch
                self._tensors = (tf.constant(self.paths), tf.constant(self.labels))
        paths, labels = self._tensors
        data = tf.io.read_file(tf.gather(paths, index))
        image = tf.io.decode_image(data, expand_animations=False)
        return image, tf.gather(labels, index)


@dataclasses.dataclass
class StreamSplit:
    """A split read in order from `make()`, a `tf.data` dataset of ``(uint8 image, label)``."""

    make: Callable[[], tf.data.Dataset]
    size: int
    image_shape: tuple

    fetch = None  # read in order, not by index

    def take(self, indices: np.ndarray | None) -> "StreamSplit":
        """The examples at the positions `indices`, still read in stream order."""
        if indices is None:
            return self
        make, size = self.make, self.size
        return StreamSplit(lambda: select_positions(make(), size, indices), len(indices),
                           self.image_shape)


def hold_out(split, fraction: float, seed: int, *, what: str = "data.validation_fraction"):
    """``(kept, held_out)``: `split` cut by `holdout_indices` (stratified by class when its
    labels are in memory; a stream's positions are drawn without reading it, unstratified)."""
    labels = getattr(split, "labels", None)
    if labels is None:  # a stream: a seeded draw of positions, whatever their classes
        labels = np.zeros(split.size, np.int32)
    kept, held = holdout_indices(labels, fraction, seed, what=what)
    return split.take(kept), split.take(held)


@dataclasses.dataclass
class Source:
    """A dataset as read, before resizing, normalisation and augmentation.

    Attributes:
      name: the spec it was read from.
      class_names: one per class, in label order.
      train, test: the two splits.
      image_shape: ``(H, W, C)`` of the stored images; H and W are None when they vary.
      statistics: known ``(mean, std)``, or None to compute them from the training images.
      flip_default, imagenet_style_default: the dataset's default augmentation.
    """

    name: str
    class_names: tuple[str, ...]
    train: ArraySplit | FileSplit | StreamSplit
    test: ArraySplit | FileSplit | StreamSplit
    image_shape: tuple
    statistics: tuple | None = None
    flip_default: bool = True
    imagenet_style_default: bool = False
