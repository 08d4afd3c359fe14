"""TensorFlow Datasets (TFDS) image-classification datasets, online and offline.

`tfds.builder(name, data_dir=...)` finds a prepared dataset; an unprepared one is prepared with
`download_and_prepare`, which downloads it, or (for datasets such as imagenet2012 that must be
downloaded by hand) reads the files of `manual_dir`. Both are checked before TFDS starts: the
hand-downloaded files must be there, and the dataset's download hosts must answer within
seconds (one HEAD request each, through the user's proxy settings). Without them the user gets
one line saying how to prepare the dataset, in seconds, instead of TFDS's minutes of retries,
and nothing is left behind; a preparation that fails later removes what it created.

Datasets whose images have a fixed shape and fit in memory (cifar10/100, mnist, fashion_mnist,
svhn_cropped at 150-230 MB) are read once into arrays; the others (imagenet2012, imagenette)
are streamed in file order (``shuffle_files=False``) so that positions, and with them the search
split, are the same in every run.
"""

from __future__ import annotations

import difflib
import os
import pathlib
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ubnas_tf.data.info import KNOWN_STATISTICS
from ubnas_tf.data.splits import MEMORY_BUDGET_BYTES, ArraySplit, Source, StreamSplit
from ubnas_tf.errors import UserError

__all__ = ["open_tfds", "DIGIT_DATASETS", "IMAGENET_STYLE_DATASETS"]

# A mirrored digit is another symbol (or none): no flips by default.
DIGIT_DATASETS = frozenset({"mnist", "svhn_cropped", "emnist", "kmnist", "binary_alpha_digits"})
IMAGENET_STYLE_DATASETS = frozenset(
    {"imagenet2012", "imagenet2012_subset", "imagenette", "imagewang", "imagenet_v2"}
)
# Datasets whose evaluation split is called "validation"; used when TFDS cannot list the splits
# (a dataset mocked without its metadata files).
_VALIDATION_ONLY = IMAGENET_STYLE_DATASETS
_TEST_SPLIT_NAMES = ("test", "validation", "valid", "val")


def _builder_without_gcs_preview(spec: str, data_dir: str | None):
    """`tfds.builder` without its look into gs://tfds-data for an unprepared dataset's info:
    a preview we do not use, which TensorFlow's GCS client retries for minutes (measured:
    ~200 s) when the network refuses, before our own check could say so in seconds."""
    from tensorflow_datasets.core.utils import gcs_utils

    previous = getattr(gcs_utils, "_is_gcs_disabled", None)
    if previous is None:  # another TFDS version: build as TFDS does
        return tfds.builder(spec, data_dir=data_dir)
    gcs_utils._is_gcs_disabled = True
    try:
        return tfds.builder(spec, data_dir=data_dir)
    finally:
        gcs_utils._is_gcs_disabled = previous


def _builder(spec: str, data_dir: str | None):
    base = spec.split("/")[0].split(":")[0]
    try:
        return _builder_without_gcs_preview(spec, data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        names = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(base, names, n=5, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UserError(
            f"unknown dataset {spec!r}; {hint}use a TFDS image-classification name "
            "(see tfds.list_builders()), folder:PATH, idx:PATH, fashion_mnist_local or demo"
        ) from None
    except (ValueError, KeyError, AssertionError) as error:
        # Unknown config or version, e.g. "imagenette/999px".
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"cannot open TFDS dataset {spec!r} ({message}); fix the name") from None


def _image_and_label_keys(builder, spec: str) -> tuple[str, str]:
    features = builder.info.features
    keys = builder.info.supervised_keys
    if not (isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)):
        keys = ("image", "label")
    image_key, label_key = keys
    try:
        image, label = features[image_key], features[label_key]
    except (KeyError, TypeError):
        image = label = None
    if not isinstance(image, tfds.features.Image) or not isinstance(
        label, tfds.features.ClassLabel
    ):
        raise UserError(
            f"TFDS dataset {spec!r} is not an image-classification dataset (it needs an image "
            "and a class label); pick another dataset"
        )
    return image_key, label_key


def _manual_files(instructions: str) -> list[str]:
    # The instructions name the archives to download, e.g. "ILSVRC2012_img_train.tar".
    names = re.findall(r"[\w.-]+\.(?:tar\.gz|tgz|tar|zip|gz)\b", instructions or "")
    return list(dict.fromkeys(names))


PROBE_TIMEOUT_SECONDS = 5


def _unreachable(builder) -> str | None:
    """Why the dataset's download hosts cannot be reached (None: they answer, or TFDS does not
    say where it downloads from). Any HTTP answer, even an error status, means a network."""
    try:
        urls = list(builder.url_infos or ())
    except Exception:  # noqa: BLE001 - no checksums file: TFDS will find out itself
        return None
    first_per_host = {}
    for url in urls:
        first_per_host.setdefault(urllib.parse.urlsplit(url).netloc, url)
    for host, url in first_per_host.items():
        try:
            request = urllib.request.Request(url, method="HEAD")
            urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_SECONDS).close()
        except urllib.error.HTTPError:
            continue
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            return f"{host} cannot be reached: {reason}"
    return None


def _check_manual_files(builder, spec: str, data_dir: str, manual_dir: str | None) -> list:
    """The hand-downloaded files the dataset needs (checked to be in the manual folder)."""
    manual = manual_dir or f"{data_dir}/downloads/manual"
    files = _manual_files(builder.MANUAL_DOWNLOAD_INSTRUCTIONS)
    missing = [name for name in files if not os.path.exists(os.path.join(manual, name))]
    if missing or not files:
        needed = " and ".join(missing) or "the files its TFDS instructions name"
        raise UserError(
            f"{spec} is not prepared in {data_dir} and must be downloaded by hand: put "
            f"{needed} in {manual} (or pass --manual_dir), then rerun"
        )
    return files


class _Leftovers:
    """What a preparation creates (the data dir, the dataset's folder, the downloads folder
    and entries in it such as `*.tmp` folders), to be removed if it fails."""

    def __init__(self, builder):
        root = pathlib.Path(builder.data_dir_root)
        self.downloads = root / "downloads"
        self.absent = [path for path in (root, root / builder.name, self.downloads)
                       if not path.exists()]
        self.entries = set(self.downloads.iterdir()) if self.downloads.is_dir() else set()

    def remove(self) -> None:
        if self.downloads.is_dir() and self.downloads not in self.absent:
            for entry in set(self.downloads.iterdir()) - self.entries:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        for path in reversed(self.absent):  # the deepest first; each is this attempt's
            shutil.rmtree(path, ignore_errors=True)


def _mocked(builder) -> bool:
    """True under `tfds.testing.mock_data`, whose preparation is a no-op that needs neither
    network nor hand-downloaded files (the checks before a real preparation would refuse)."""
    method = getattr(type(builder), "download_and_prepare", None)
    return getattr(method, "__module__", "").startswith("tensorflow_datasets.testing")


def _prepare(builder, spec: str, manual_dir: str | None) -> None:
    if builder.is_prepared():
        return
    data_dir = str(builder.data_dir_root)
    how = (f"run `tfds build {spec} --data_dir DIR` on a machine with network, copy DIR here "
           "and pass --data_dir DIR")
    files = None
    if _mocked(builder):
        pass
    elif builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
        files = _check_manual_files(builder, spec, data_dir, manual_dir)
    else:
        offline = _unreachable(builder)
        if offline:
            raise UserError(f"{spec} is not prepared in {data_dir} and cannot be downloaded "
                            f"({offline}); {how}")
    leftovers = _Leftovers(builder)
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    except ImportError:
        leftovers.remove()
        raise  # a broken installation, not bad input: exit 1 with the traceback
    except Exception as error:  # noqa: BLE001 - any other failure means "data not available"
        leftovers.remove()
        reason = (str(error).splitlines() or [type(error).__name__])[0][:150]
        if files:
            manual = manual_dir or f"{data_dir}/downloads/manual"
            raise UserError(
                f"{spec} could not be prepared from {', '.join(files)} in {manual} ({reason}); "
                "check that they are complete"
            ) from None
        raise UserError(
            f"{spec} is not prepared in {data_dir} and could not be downloaded ({reason}); {how}"
        ) from None


def _split_names(builder, spec: str) -> tuple[str, str]:
    available = list(builder.info.splits.keys())
    base = builder.name
    if not available:  # metadata not on disk (mocked): fall back on what we know
        return "train", ("validation" if base in _VALIDATION_ONLY else "test")
    if "train" not in available:
        raise UserError(
            f"TFDS dataset {spec!r} has no train split (it has {', '.join(available)}); "
            "pick another dataset"
        )
    for name in _TEST_SPLIT_NAMES:
        if name in available:
            return "train", name
    raise UserError(
        f"TFDS dataset {spec!r} has no test or validation split (it has "
        f"{', '.join(available)}); pick another dataset"
    )


def _count(builder, split: str, dataset: tf.data.Dataset) -> int:
    try:
        count = builder.info.splits[split].num_examples
    except (KeyError, ValueError, TypeError):
        count = 0
    if count:
        return int(count)
    count = int(dataset.cardinality())
    if count >= 0:
        return count
    return int(dataset.reduce(0, lambda total, _: total + 1))


def _read_split(builder, split, keys, image_shape, max_examples):
    image_key, label_key = keys

    def make() -> tf.data.Dataset:
        dataset = builder.as_dataset(split=split, shuffle_files=False)
        dataset = dataset.map(
            lambda example: (example[image_key], tf.cast(example[label_key], tf.int32)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        # TFDS shuffles examples when it prepares a dataset, so the first N are a fair sample.
        return dataset.take(max_examples) if max_examples else dataset

    size = _count(builder, split, make())
    if max_examples:
        size = min(size, max_examples)
    fixed = None not in image_shape
    if fixed and size * int(np.prod(image_shape)) <= MEMORY_BUDGET_BYTES:
        images, labels = [], []
        for image_batch, label_batch in tfds.as_numpy(make().batch(1024)):
            images.append(image_batch)
            labels.append(label_batch)
        return ArraySplit(np.concatenate(images), np.concatenate(labels).astype(np.int32))
    return StreamSplit(make=make, size=size, image_shape=image_shape)


def open_tfds(
    spec: str, *, data_dir: str | None, manual_dir: str | None, max_examples: int | None,
    max_test_examples: int | None = None,
) -> Source:
    """A Source over the TFDS dataset `spec` (``name``, ``name/config`` or ``name:version``)."""
    builder = _builder(spec, data_dir)
    keys = _image_and_label_keys(builder, spec)
    _prepare(builder, spec, manual_dir)
    train_split, test_split = _split_names(builder, spec)
    image_shape = tuple(builder.info.features[keys[0]].shape)
    if image_shape[-1] is None:
        image_shape = image_shape[:-1] + (3,)
    label = builder.info.features[keys[1]]
    train = _read_split(builder, train_split, keys, image_shape, max_examples)
    test = _read_split(builder, test_split, keys, image_shape, max_test_examples)
    if not train.size or not test.size:
        raise UserError(
            f"TFDS dataset {spec!r} has an empty split in {builder.data_dir}; rebuild it with "
            f"`tfds build {spec}`"
        )
    return Source(
        name=spec,
        class_names=tuple(label.names),
        train=train,
        test=test,
        image_shape=image_shape,
        statistics=KNOWN_STATISTICS.get(builder.name),
        flip_default=builder.name not in DIGIT_DATASETS,
        imagenet_style_default=builder.name in IMAGENET_STYLE_DATASETS or None in image_shape,
    )
