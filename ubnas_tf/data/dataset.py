"""`load_dataset` and `Dataset`: the one entry point every tool reads its data through."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ubnas_tf.data.augment import AugmentConfig, resolve_augment
from ubnas_tf.data.info import DatasetInfo, mean_and_std
from ubnas_tf.data.pipeline import Transform, build_pipeline, derive_seed
from ubnas_tf.data.sources import open_source
from ubnas_tf.data.splits import (MEMORY_BUDGET_BYTES, ArraySplit, Source, hold_out,
                                  subset_indices)
from ubnas_tf.errors import UserError

__all__ = ["Dataset", "load_dataset", "DEFAULT_VARIABLE_INPUT_SIZE", "STATISTICS_IMAGES"]

# Images of varying size (imagenet2012, imagenette) are fed at ImageNet's customary 224 px
# unless `input_size` says otherwise.
DEFAULT_VARIABLE_INPUT_SIZE = 224
# Mean and std of datasets without known statistics come from this many training images.
STATISTICS_IMAGES = 10_000


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise UserError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _input_size(value) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise UserError(f"input_size must be an integer or (height, width), got {value!r}")
    return tuple(_positive_int(side, "input_size") for side in value)


class Dataset:
    """A loaded dataset: its `info`, and `tf.data` pipelines over its splits.

    Every pipeline yields ``(images, labels)``: float32 ``[B, H, W, C]`` normalised with
    ``info.mean`` / ``info.std``, and int32 ``[B]``. The same `seed` (given to `load_dataset`)
    gives the same batches in the same order.
    """

    def __init__(self, source: Source, *, input_size=None, augment: dict | None = None, seed=0,
                 validation_fraction: float = 0.0):
        self._source = source
        self._seed = int(seed)
        height, width, channels = source.image_shape
        if input_size is None:
            if height is None or width is None:
                input_size = (DEFAULT_VARIABLE_INPUT_SIZE, DEFAULT_VARIABLE_INPUT_SIZE)
            else:
                input_size = (height, width)
        self._size = tuple(input_size)
        self.augment_config: AugmentConfig = resolve_augment(
            augment,
            image_size=self._size,
            flip_default=source.flip_default,
            imagenet_style_default=source.imagenet_style_default,
        )
        evaluation = self._transform(augment=False, mean=(0.0,) * channels, std=(1.0,) * channels)
        self._train = self._preresized(source.train, evaluation)
        self._validation = None
        if validation_fraction:
            self._train, self._validation = hold_out(self._train, validation_fraction, seed)
        self._test = self._preresized(source.test, evaluation)
        mean, std = source.statistics or self._statistics(evaluation)
        self.info = DatasetInfo(
            name=source.name,
            num_classes=len(source.class_names),
            input_shape=(self._size[0], self._size[1], channels),
            train_size=self._train.size,
            test_size=self._test.size,
            validation_size=self._validation.size if self._validation is not None else 0,
            class_names=tuple(source.class_names),
            mean=tuple(float(value) for value in mean),
            std=tuple(float(value) for value in std),
        )

    def __repr__(self) -> str:
        info = self.info
        return (
            f"Dataset({info.name!r}, {info.num_classes} classes, input {info.input_shape}, "
            f"{info.train_size} train / {info.validation_size} validation / {info.test_size} "
            "test)"
        )

    def _transform(self, *, augment: bool, mean=None, std=None) -> Transform:
        return Transform(
            size=self._size,
            channels=self._source.image_shape[2],
            mean=self.info.mean if mean is None else mean,
            std=self.info.std if std is None else std,
            config=self.augment_config,
            augment=augment,
        )

    def _preresized(self, split, evaluation: Transform):
        """Resizes an in-memory split once, when it stays in memory and no random crop needs
        the originals, instead of in every epoch."""
        if not isinstance(split, ArraySplit) or split.image_shape == self._size + (
            evaluation.channels,
        ):
            return split
        if self.augment_config.imagenet_style:
            return split
        if split.size * evaluation.prepared_bytes > MEMORY_BUDGET_BYTES:
            return split
        images = tf.data.Dataset.from_tensor_slices(split.images).map(evaluation.prepare)
        resized = np.concatenate([batch.numpy() for batch in images.batch(1024)])
        return ArraySplit(resized, split.labels)

    def _statistics(self, evaluation: Transform):
        """Per-channel mean and std of up to `STATISTICS_IMAGES` prepared training images."""
        split = self._train
        if split.fetch is not None:
            indices = subset_indices(split.size, STATISTICS_IMAGES, self._seed)
            order = np.arange(split.size) if indices is None else indices
            images = tf.data.Dataset.from_tensor_slices(order.astype(np.int64)).map(
                lambda index: evaluation.prepare(split.fetch(index)[0]),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        else:
            images = split.make().take(STATISTICS_IMAGES).map(
                lambda image, label: evaluation.prepare(image), num_parallel_calls=tf.data.AUTOTUNE
            )
        return mean_and_std(batch.numpy() for batch in images.batch(512))

    # --- pipelines ---------------------------------------------------------------------------

    def train(
        self,
        batch_size: int,
        *,
        augment: bool = True,
        shuffle: bool = True,
        repeat: bool = False,
        drop_remainder: bool = False,
    ) -> tf.data.Dataset:
        """The whole training split, augmented as configured, reshuffled every epoch."""
        return build_pipeline(
            self._train,
            self._transform(augment=augment),
            batch_size=_positive_int(batch_size, "batch_size"),
            shuffle=shuffle,
            repeat=repeat,
            seed=derive_seed(self._seed, 1),
            drop_remainder=drop_remainder,
        )

    def test(self, batch_size: int) -> tf.data.Dataset:
        """The test split in its fixed order, without augmentation."""
        return build_pipeline(
            self._test,
            self._transform(augment=False),
            batch_size=_positive_int(batch_size, "batch_size"),
        )

    def validation(self, batch_size: int) -> tf.data.Dataset:
        """The validation split (held out of the training split by `load_dataset`'s
        `validation_fraction`) in its fixed order, without augmentation."""
        if self._validation is None:
            raise UserError("this dataset has no validation split: load it with "
                            "validation_fraction > 0 (data.validation_fraction)")
        return build_pipeline(
            self._validation,
            self._transform(augment=False),
            batch_size=_positive_int(batch_size, "batch_size"),
        )

    def search_split_sizes(self, portion: float = 0.5) -> tuple[int, int]:
        """``(n_weight, n_arch)``: ``floor(portion * train_size)`` and the rest.

        The cut of PC-DARTS's train_search.py (``split = int(np.floor(portion * num_train))``).
        """
        if isinstance(portion, bool) or not isinstance(portion, (int, float)) or not (
            0.0 < portion < 1.0
        ):
            raise UserError(f"search portion must be between 0 and 1 (exclusive), got {portion!r}")
        n_weight = int(math.floor(portion * self._train.size))
        n_arch = self._train.size - n_weight
        if n_weight < 1 or n_arch < 1:
            # With 2 or more examples only a portion far from 0.5 empties a half.
            fix = ("use at least 2 training examples (raise max_examples)"
                   if self._train.size < 2 else "use a portion nearer 0.5 or more examples")
            raise UserError(
                f"search portion {portion} leaves an empty half of {self._train.size} training "
                f"example(s): {fix}"
            )
        return n_weight, n_arch

    def search_split_indices(self, portion: float = 0.5, seed: int = 0):
        """Training-split positions of the weight half and the architecture half (disjoint,
        together the whole split): a permutation seeded by `seed`, cut at `portion`."""
        n_weight, _ = self.search_split_sizes(portion)
        permutation = np.random.default_rng(seed).permutation(self._train.size)
        return permutation[:n_weight], permutation[n_weight:]

    def search_splits(self, batch_size: int, *, portion: float = 0.5, seed: int = 0):
        """``(weight_ds, arch_ds)``: the training split cut in two for the bilevel search.

        Both are shuffled, augmented as configured and drop incomplete batches; `arch_ds`
        repeats forever, so the search loop keeps one iterator over it instead of restarting
        one every step (DARTS's ``next(iter(valid_queue))`` restarts, and reshuffles, each
        time). The test split is not touched.
        """
        batch_size = _positive_int(batch_size, "batch_size")
        weight_indices, arch_indices = self.search_split_indices(portion, seed)
        if min(len(weight_indices), len(arch_indices)) < batch_size:
            raise UserError(
                f"batch_size {batch_size} is larger than a search half "
                f"({len(weight_indices)} / {len(arch_indices)} examples); use a smaller "
                "batch_size or more examples"
            )
        halves = []
        for purpose, indices, repeat in ((2, weight_indices, False), (3, arch_indices, True)):
            halves.append(
                build_pipeline(
                    self._train,
                    self._transform(augment=True),
                    batch_size=batch_size,
                    indices=indices,
                    shuffle=True,
                    repeat=repeat,
                    seed=derive_seed(self._seed, seed, purpose),
                    drop_remainder=True,
                )
            )
        return tuple(halves)

    def search_half_batches(self, batch_size: int, *, half: str, portion: float = 0.5,
                            seed: int = 0, max_examples: int | None = None):
        """One pass over a search half (`half`: 'weight' or 'architecture'), unaugmented and
        in index order, the first `max_examples` of it (all: None): the same images in the
        same batches every call, as comparing networks on it needs."""
        if half not in ("weight", "architecture"):
            raise UserError(f"half must be 'weight' or 'architecture', got {half!r}")
        indices = self.search_split_indices(portion, seed)[half == "architecture"]
        if max_examples is not None:
            indices = indices[:_positive_int(max_examples, "max_examples")]
        return build_pipeline(self._train, self._transform(augment=False),
                              batch_size=_positive_int(batch_size, "batch_size"),
                              indices=np.sort(indices))

    def samples(self, n: int, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
        """The first `n` examples of `split`, normalised, unaugmented: ``(images, labels)``."""
        n = _positive_int(n, "number of samples")
        if split not in ("train", "test"):
            raise UserError(f"split must be 'train' or 'test', got {split!r}")
        source = self._train if split == "train" else self._test
        pipeline = build_pipeline(source, self._transform(augment=False), batch_size=n)
        for images, labels in pipeline.take(1):
            return images.numpy(), labels.numpy()
        raise UserError(f"the {split} split of {self.info.name} is empty; add examples")


def load_dataset(
    spec: str,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    input_size=None,
    max_examples: int | None = None,
    max_test_examples: int | None = None,
    validation_fraction: float = 0.0,
    seed: int = 0,
    augment: dict | None = None,
    skip_corrupt: bool = False,
) -> Dataset:
    """Loads the dataset named by `spec`.

    Args:
      spec: a TFDS image-classification name (``cifar10``, ``imagenette/160px-v2``, ...),
        ``folder:PATH`` (one sub-folder per class), ``idx:PATH`` (the four MNIST-format files),
        ``fashion_mnist_local`` (Debian's Fashion-MNIST files) or ``demo`` (the class-balanced
        Fashion-MNIST subset shipped in the package).
      data_dir: TFDS data directory. manual_dir: TFDS folder of files downloaded by hand.
      input_size: ``H`` or ``(H, W)`` of the model's input; None keeps the native size.
      max_examples: cap on the training examples (a seeded subset), before the hold-out; the
        test split is not capped by it.
      max_test_examples: cap on the test examples (a seeded subset; quick evaluations).
      validation_fraction: share of the training split held out as the validation split
        (`validation()`; class-stratified and seeded, `ubnas_tf.data.splits.holdout_indices`);
        0 for none. `info.train_size` counts what is left for training.
      seed: fixes the subsets, the hold-out, the shuffles and the augmentation.
      augment: overrides of the training augmentation: ``crop_padding``, ``flip``, ``cutout``,
        ``imagenet_style`` (see `ubnas_tf.data.augment.resolve_augment`).
      skip_corrupt: skip undecodable images of a folder dataset with a warning, instead of
        stopping with an error that names the file.

    Raises:
      UserError: for any bad input, with a one-line message naming the fix.
    """
    if max_examples is not None:
        max_examples = _positive_int(max_examples, "max_examples")
    if max_test_examples is not None:
        max_test_examples = _positive_int(max_test_examples, "max_test_examples")
    if (isinstance(validation_fraction, bool) or not isinstance(validation_fraction, (int, float))
            or not 0.0 <= validation_fraction < 1.0):
        raise UserError(f"data.validation_fraction must be in [0, 1), got {validation_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise UserError(f"seed must be an integer, got {seed!r}")
    if augment is not None and not isinstance(augment, dict):
        raise UserError(f"augment must be a mapping of options, got {augment!r}")
    size = _input_size(input_size)
    source = open_source(
        spec,
        data_dir=data_dir,
        manual_dir=manual_dir,
        max_examples=max_examples,
        max_test_examples=max_test_examples,
        seed=int(seed),
        skip_corrupt=bool(skip_corrupt),
        input_size=size,
    )
    return Dataset(source, input_size=size, augment=augment, seed=int(seed),
                   validation_fraction=float(validation_fraction))
