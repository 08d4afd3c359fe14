"""What the rest of UBNAS learns about a dataset: `DatasetInfo`, and the normalisation statistics.

The supernet and the network builder read the number of classes and the input shape from here,
never from constants of their own (issue 3).
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["DatasetInfo", "KNOWN_STATISTICS", "FASHION_MNIST_CLASS_NAMES", "mean_and_std"]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Facts about a loaded dataset.

    Attributes:
      name: the `spec` it was loaded from, e.g. ``"cifar10"`` or ``"folder:/data/pets"``.
      num_classes: number of classes; labels are ``0 .. num_classes - 1``.
      input_shape: ``(H, W, C)`` of the images the pipelines yield (after resizing).
      train_size: number of training examples (after `max_examples` and the validation
        hold-out).
      test_size: number of test examples (after `max_test_examples`).
      class_names: one name per class, in label order.
      mean, std: per-channel statistics in ``[0, 1]`` units; the pipelines yield
        ``(pixel / 255 - mean) / std``.
      validation_size: number of examples held out of the training split for validation.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    train_size: int
    test_size: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    validation_size: int = 0

    def as_dict(self) -> dict:
        """A JSON-serialisable dict, for logs and metrics files."""
        return dataclasses.asdict(self)


def _over_255(values):
    return tuple(round(value / 255.0, 4) for value in values)


# Per-channel (mean, std) of the training split, in [0, 1] units.
KNOWN_STATISTICS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # DARTS, cnn/utils.py (CIFAR_MEAN, CIFAR_STD), Liu et al. 2019.
    "cifar10": ((0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)),
    # weiaicunzai/pytorch-cifar100, conf/global_settings.py (CIFAR100_TRAIN_MEAN/STD).
    "cifar100": ((0.50707516, 0.48654887, 0.44091784), (0.26733429, 0.25643846, 0.27615047)),
    # pytorch/examples, mnist/main.py: Normalize((0.1307,), (0.3081,)).
    "mnist": ((0.1307,), (0.3081,)),
    # Computed over the 60 000 training images (Debian's IDX files; tests check it).
    "fashion_mnist": ((0.2860,), (0.3530,)),
    # uoguelph-mlrg/Cutout, train.py (DeVries & Taylor 2017): mean [109.9, 109.7, 113.8] / 255,
    # std [50.1, 50.6, 50.8] / 255.
    "svhn_cropped": (_over_255((109.9, 109.7, 113.8)), _over_255((50.1, 50.6, 50.8))),
    # torchvision's ImageNet statistics (pytorch/examples, imagenet/main.py).
    "imagenet2012": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
for _subset in ("imagenette", "imagenet2012_subset", "imagewang", "imagenet_v2"):
    KNOWN_STATISTICS[_subset] = KNOWN_STATISTICS["imagenet2012"]

# Zalando's names, in label order (zalandoresearch/fashion-mnist, README "Labels").
FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def mean_and_std(batches) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation, in [0, 1] units, of uint8 image batches.

    `batches` is an iterable of ``[N, H, W, C]`` arrays (any N, H, W; fixed C). Sums run in
    float64 so that 10 000 images do not lose precision.
    """
    total = total_squares = None
    count = 0
    for batch in batches:
        pixels = np.asarray(batch, dtype=np.float64).reshape(-1, np.shape(batch)[-1]) / 255.0
        if total is None:
            total = np.zeros(pixels.shape[1])
            total_squares = np.zeros(pixels.shape[1])
        total += pixels.sum(axis=0)
        total_squares += np.square(pixels).sum(axis=0)
        count += pixels.shape[0]
    if not count:
        raise ValueError("mean_and_std needs at least one pixel")
    mean = total / count
    # A constant channel would divide by zero when normalising; 1.0 leaves it centred only.
    std = np.sqrt(np.maximum(total_squares / count - np.square(mean), 0.0))
    std = np.where(std < 1e-6, 1.0, std)
    return tuple(float(value) for value in mean), tuple(float(value) for value in std)
