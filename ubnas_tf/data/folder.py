"""`folder:PATH`: a folder of images, one sub-folder per class.

Layouts:

- ``PATH/CLASS/*.png``: a seeded 10 % of each class (at least one image when the class has
  two) is held out as the test split, the same for every run.
- ``PATH/train/CLASS/...`` with ``PATH/test/CLASS/...`` (or ``val`` / ``validation``): the
  given splits.

Images may be PNG, JPEG, BMP or GIF (first frame), of any size, grey, grey+alpha, RGB or RGBA.
A dataset is RGB when any of its images is, else grey. Images are resized to `input_size`, by
default the most common size of the training images.

Every file is decoded once when the folder is opened, with the same decoder the pipelines use,
so a corrupt file is reported up front with its path (or skipped with a warning when
`skip_corrupt` is set) instead of stopping training later. That costs one pass over the data,
which is fine for the small folders this route is meant for; large datasets belong in TFDS.
When the decoded images fit in memory they are kept, so the pass doubles as the cache.
"""

from __future__ import annotations

import collections
import os

import numpy as np
import tensorflow as tf
from absl import logging

from ubnas_tf.data.augment import resize_uint8, to_channels
from ubnas_tf.data.splits import (
    MEMORY_BUDGET_BYTES,
    ArraySplit,
    FileSplit,
    Source,
    subset_indices,
)
from ubnas_tf.errors import UserError

__all__ = ["IMAGE_EXTENSIONS", "TEST_FOLDER_NAMES", "HELD_OUT_FRACTION", "open_folder"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TEST_FOLDER_NAMES = ("test", "val", "validation")
HELD_OUT_FRACTION = 0.1
# The held-out split and file order must not change with the run's seed, or runs with
# different seeds would be evaluated on different images.
_LAYOUT_SEED = 0


def _subfolders(root: str) -> list[str]:
    try:
        with os.scandir(root) as entries:
            return sorted(
                entry.name
                for entry in entries
                if entry.is_dir() and not entry.name.startswith(".")
            )
    except OSError as error:
        raise UserError(
            f"cannot read folder {root} ({error.strerror}); check that it exists and is readable"
        ) from None


def _image_files(folder: str) -> list[str]:
    found = []
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
        found += [
            os.path.join(directory, name)
            for name in sorted(files)
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return found


def _index(root: str) -> tuple[list[str], list[list[str]]]:
    """Class names and, per class, its image files."""
    classes = _subfolders(root)
    if not classes:
        raise UserError(
            f"folder {root} has no class sub-folders; put each class's images in its own "
            "sub-folder (PATH/CLASS/IMAGE.png)"
        )
    files = []
    for name in classes:
        class_files = _image_files(os.path.join(root, name))
        if not class_files:
            raise UserError(
                f"class folder {os.path.join(root, name)} has no images "
                f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder"
            )
        files.append(class_files)
    return classes, files


def _splits(path: str) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]]]:
    """Class names and the (file, label) lists of the train and test splits."""
    if not os.path.isdir(path):
        raise UserError(
            f"folder {path} does not exist or is not a folder; pass folder:PATH with one "
            "sub-folder per class"
        )
    subfolders = _subfolders(path)
    test_names = [name for name in TEST_FOLDER_NAMES if name in subfolders]
    rng = np.random.default_rng(_LAYOUT_SEED)
    if "train" in subfolders and test_names:
        classes, train_files = _index(os.path.join(path, "train"))
        test_classes, test_files = _index(os.path.join(path, test_names[0]))
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise UserError(
                f"test classes {', '.join(unknown)} of {path} have no training folder; "
                "use the same class sub-folders in train and test"
            )
        train = [(file, label) for label, files in enumerate(train_files) for file in files]
        test = [
            (file, classes.index(name))
            for name, files in zip(test_classes, test_files)
            for file in files
        ]
    else:
        classes, class_files = _index(path)
        train, test = [], []
        for label, files in enumerate(class_files):
            files = [files[i] for i in rng.permutation(len(files))]
            held_out = max(1, round(HELD_OUT_FRACTION * len(files))) if len(files) > 1 else 0
            test += [(file, label) for file in files[:held_out]]
            train += [(file, label) for file in files[held_out:]]
    if len(classes) < 2:
        raise UserError(
            f"folder {path} has only one class ({classes[0]}); a classifier needs at least "
            "two class sub-folders"
        )
    # Mixed classes in a fixed order, so that the first test images span the classes.
    train = [train[i] for i in rng.permutation(len(train))]
    test = [test[i] for i in rng.permutation(len(test))]
    return classes, train, test


def _decode(path: str) -> np.ndarray:
    with open(path, "rb") as stream:
        data = stream.read()
    return tf.io.decode_image(data, expand_animations=False).numpy()


def _decode_all(examples, *, skip_corrupt: bool):
    """Decodes every file: the examples that decode, their shapes, and their pixels while
    those fit in memory (None once they do not)."""
    good, shapes, images, kept_bytes = [], [], [], 0
    for path, label in examples:
        try:
            image = _decode(path)
        except (tf.errors.OpError, OSError) as error:
            reason = getattr(error, "message", None) or getattr(error, "strerror", None)
            reason = str(reason or error).splitlines()[0][:120]
            if not skip_corrupt:
                raise UserError(
                    f"corrupt or unreadable image {path} ({reason}); delete or replace it, "
                    "or ask to skip corrupt images (skip_corrupt)"
                ) from None
            logging.warning("Skipping corrupt image %s (%s)", path, reason)
            continue
        good.append((path, label))
        shapes.append(image.shape)
        if images is not None:
            kept_bytes += image.nbytes
            if kept_bytes <= MEMORY_BUDGET_BYTES:
                images.append(image)
            else:
                images = None  # too large: the pipelines will read the files instead
    return good, shapes, images


def _cap(examples: list, max_examples: int | None, seed: int) -> list:
    indices = subset_indices(len(examples), max_examples, seed)
    return examples if indices is None else [examples[i] for i in indices]


def _to_array_split(images, labels, size, channels) -> ArraySplit:
    stacked = np.stack(
        [resize_uint8(to_channels(tf.constant(image), channels), size).numpy() for image in images]
    )
    return ArraySplit(stacked, np.asarray(labels, np.int32))


def open_folder(
    path: str,
    *,
    name: str,
    max_examples: int | None,
    seed: int,
    skip_corrupt: bool,
    input_size: tuple[int, int] | None,
    max_test_examples: int | None = None,
) -> Source:
    """A Source over a folder of class sub-folders (see the module docstring)."""
    classes, train, test = _splits(path)
    if not test:
        raise UserError(
            f"folder {path} has too few images to hold out a test split; put at least two "
            "images in each class sub-folder"
        )
    train, test = _cap(train, max_examples, seed), _cap(test, max_test_examples, seed)

    decoded = {}
    for split, examples in (("train", train), ("test", test)):
        decoded[split] = _decode_all(examples, skip_corrupt=skip_corrupt)
        skipped = len(examples) - len(decoded[split][0])
        if skipped:
            logging.warning(
                "Skipped %d corrupt image(s) in the %s split of %s", skipped, split, path
            )
        if not decoded[split][0]:
            raise UserError(f"no readable images in the {split} split of {path}; add images")

    all_shapes = decoded["train"][1] + decoded["test"][1]
    channels = 3 if any(shape[-1] >= 3 for shape in all_shapes) else 1
    size = tuple(input_size) if input_size else collections.Counter(
        shape[:2] for shape in decoded["train"][1]
    ).most_common(1)[0][0]
    total = len(all_shapes)
    fits = total * size[0] * size[1] * channels <= MEMORY_BUDGET_BYTES
    splits = {}
    for split, (examples, _, images) in decoded.items():
        labels = [label for _, label in examples]
        if fits and images is not None:
            splits[split] = _to_array_split(images, labels, size, channels)
        else:
            paths = np.asarray([file for file, _ in examples], dtype=object).astype(str)
            splits[split] = FileSplit(paths, np.asarray(labels, np.int32), channels)
    logging.info(
        "Folder %s: %d classes, %d train and %d test images, %dx%dx%d",
        path, len(classes), splits["train"].size, splits["test"].size, *size, channels,
    )
    return Source(
        name=name,
        class_names=tuple(classes),
        train=splits["train"],
        test=splits["test"],
        image_shape=(size[0], size[1], channels),
    )
