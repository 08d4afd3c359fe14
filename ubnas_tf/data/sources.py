"""Where images come from: the splits of a dataset, and the readers behind each `spec`.

A `Source` holds a train and a test split of uint8 images with int32 labels, in a fixed order.
A split is one of:

- `ArraySplit`: every image in memory (IDX files, the shipped demo, small folders, small TFDS
  datasets). The arrays *are* the cache.
- `FileSplit`: image files decoded on the fly (folders too large for memory).
- `StreamSplit`: a `tf.data` stream read in order (TFDS datasets too large for memory).

Array and file splits are read by index, so shuffling and the search split permute indices,
never images; a stream is read in order and cut by a mask over positions.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np
import tensorflow as tf

from ubnas_tf.data.idx import read_idx_folder
from ubnas_tf.data.info import FASHION_MNIST_CLASS_NAMES
from ubnas_tf.errors import UserError

__all__ = [
    "ArraySplit",
    "FileSplit",
    "StreamSplit",
    "Source",
    "DEMO_DIR",
    "FASHION_MNIST_LOCAL_DIR",
    "MEMORY_BUDGET_BYTES",
    "subset_indices",
    "open_source",
]

# Splits whose decoded images fit in this many bytes are held in memory (issue 3: "cached where
# it fits"); larger ones are read from disk each epoch.
MEMORY_BUDGET_BYTES = 1 << 30

DEMO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo")
# Debian's dataset-fashion-mnist package installs the four IDX files here.
FASHION_MNIST_LOCAL_DIR = "/usr/share/datasets/fashion-mnist"


def subset_indices(size: int, max_examples: int | None, seed: int) -> np.ndarray | None:
    """The first `max_examples` of a seeded permutation of ``range(size)``, or None for all."""
    if max_examples is None or max_examples >= size:
        return None
    return np.random.default_rng(seed).permutation(size)[:max_examples]


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


def open_idx(
    folder: str,
    *,
    name: str,
    max_examples: int | None,
    seed: int,
    class_names: tuple[str, ...] | None = None,
    flip_default: bool = False,
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
        ArraySplit(*splits[split]).take(subset_indices(len(splits[split][1]), max_examples, seed))
        for split in ("train", "test")
    )
    return Source(
        name=name,
        class_names=class_names,
        train=train,
        test=test,
        image_shape=train.image_shape,
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
) -> Source:
    """Reads the dataset named by `spec` (see `ubnas_tf.data.load_dataset`)."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(
            "no dataset given; pass a TFDS name, folder:PATH, idx:PATH, fashion_mnist_local "
            "or demo"
        )
    spec = spec.strip()
    fashion = dict(class_names=FASHION_MNIST_CLASS_NAMES, flip_default=True)
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
            return open_idx(path, name=spec, max_examples=max_examples, seed=seed)
        from ubnas_tf.data.folder import open_folder

        return open_folder(
            path,
            name=spec,
            max_examples=max_examples,
            seed=seed,
            skip_corrupt=skip_corrupt,
            input_size=input_size,
        )
    # TFDS is imported only here: it is slow to import and the local routes do not need it.
    from ubnas_tf.data.tfds_source import open_tfds

    return open_tfds(spec, data_dir=data_dir, manual_dir=manual_dir, max_examples=max_examples)
