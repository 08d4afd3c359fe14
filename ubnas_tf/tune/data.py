"""The validation data of a tuning: a copy of the training split less a seeded hold-out.

The data layer offers a training split (cut in two by the search) and a test split, and
`run_training` scores on the test split. So the tuner copies the training split, less a seeded
hold-out of `validation` of it, into OUTPUT_DIR/data as a dataset of its own whose *test* split
is that hold-out (IDX files for grey images, a folder of PNGs for colour), and every trial's
search and retraining read that dataset. The real test split is never read: in a trial's
train/metrics.json, `test_top1` is the validation top-1.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket

import numpy as np

from ubnas_tf.errors import UserError
from ubnas_tf.io_utils import atomic_write_json

__all__ = ["prepare_data", "DATA_FOLDER"]

DATA_FOLDER = "data"


def _training_arrays(split, dataset: str):
    from ubnas_tf.data.splits import ArraySplit, StreamSplit

    if isinstance(split, ArraySplit):
        return split.images, split.labels
    if isinstance(split, StreamSplit) and None not in split.image_shape[:2]:
        pairs = [(image.numpy(), int(label)) for image, label in split.make()]
        return np.stack([p[0] for p in pairs]), np.asarray([p[1] for p in pairs], np.int32)
    raise UserError(f"tuning copies the training split of {dataset} and needs images of one "
                    "size that fit in memory: set max_examples (or use a smaller dataset)")


def _write_dataset(folder: pathlib.Path, images, labels, held_out) -> str:
    """Write a dataset whose train split is `images` less `held_out` and whose test split is
    `held_out`; returns the kind of data source that reads it back (idx or folder)."""
    from ubnas_tf.data.idx import IDX_FILES, write_idx

    kept = np.setdiff1d(np.arange(len(labels)), held_out)
    folder.mkdir(parents=True)
    if images.shape[-1] == 1:
        for split, indices in (("train", kept), ("test", held_out)):
            write_idx(str(folder / IDX_FILES[(split, "images")]), images[indices, ..., 0])
            write_idx(str(folder / IDX_FILES[(split, "labels")]),
                      labels[indices].astype(np.uint8))
        return "idx"
    import tensorflow as tf

    for split, indices in (("train", kept), ("test", held_out)):
        for index in indices:
            target = folder / split / f"{int(labels[index]):04d}" / f"{index:07d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tf.io.encode_png(images[index]).numpy())
    return "folder"


def prepare_data(output_dir, dataset: str, *, validation: float, max_examples=None, seed=0,
                 data_dir=None, manual_dir=None, skip_corrupt=False) -> dict:
    """OUTPUT_DIR/data: the training split of `dataset` (capped at `max_examples`) less a seeded,
    class-stratified hold-out of `validation` of it (`ubnas_tf.data.splits.holdout_indices`),
    which becomes the test split. Written once (atomically:
    processes that start together write the same files and one of them wins) and reused.

    Returns the manifest: `spec` (what to pass as a dataset), sizes, and the original
    dataset's default augmentation (`augment`), which the copy would not know.
    """
    from ubnas_tf.data.sources import open_source
    from ubnas_tf.data.splits import holdout_indices

    output_dir = pathlib.Path(output_dir)
    target = output_dir / DATA_FOLDER
    made_from = {"dataset": dataset, "validation": validation, "max_examples": max_examples,
                 "seed": seed}
    manifest_path = target / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest["made_from"] == made_from:
            return manifest
        raise UserError(f"{target} was made from {manifest['made_from']}, not {made_from}: "
                        "pass a new --output_dir")
    source = open_source(dataset, data_dir=data_dir, manual_dir=manual_dir,
                         max_examples=max_examples, seed=seed, skip_corrupt=skip_corrupt,
                         input_size=None)
    images, labels = _training_arrays(source.train, dataset)
    # The same class-stratified, seeded hold-out as a retraining's validation split.
    _, held_out = holdout_indices(labels, validation, seed, what="validation")
    held = len(held_out)
    if labels.max() > 255:
        raise UserError(f"{dataset} has {labels.max() + 1} classes; tuning supports up to 256")
    temporary = output_dir / f".{DATA_FOLDER}.{socket.gethostname()}.{os.getpid()}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    kind = _write_dataset(temporary, images, labels, held_out)
    manifest = {
        "made_from": made_from,
        "spec": f"{kind}:{target}",
        "train_size": int(len(labels) - held),
        "validation_size": held,
        "class_names": list(source.class_names),
        "augment": {"flip": bool(source.flip_default),
                    "imagenet_style": bool(source.imagenet_style_default)},
    }
    atomic_write_json(temporary / "manifest.json", manifest)
    try:
        os.rename(temporary, target)
    except OSError:  # another process of this run was first: its copy is the same
        shutil.rmtree(temporary, ignore_errors=True)
        return json.loads(manifest_path.read_text())
    return manifest

