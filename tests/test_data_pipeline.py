"""Pipelines, the search split, augmentation ops and argument checks (issue 3)."""

import numpy as np
import pytest
import tensorflow as tf

from ubnas_tf.data import AugmentConfig, load_dataset
from ubnas_tf.data import augment as ops
from ubnas_tf.data import folder as folder_module
from ubnas_tf.data.dataset import Dataset
from ubnas_tf.data.idx import IDX_FILES, write_idx
from ubnas_tf.data.splits import ArraySplit, Source, StreamSplit
from ubnas_tf.errors import UserError

_NO_AUGMENT = {"crop_padding": 0, "flip": False}


def _indexed_source(count=40, stream=False):
    """A source whose image i is filled with the value i, so outputs reveal their index."""
    images = np.repeat(np.arange(count, dtype=np.uint8), 16).reshape(count, 4, 4, 1)
    labels = (np.arange(count) % 2).astype(np.int32)
    if stream:
        split = StreamSplit(
            make=lambda: tf.data.Dataset.from_tensor_slices((images, labels)),
            size=count,
            image_shape=(4, 4, 1),
        )
    else:
        split = ArraySplit(images, labels)
    # mean 0, std 1/255: the normalised pixel equals the index.
    return Source(
        name="indexed",
        class_names=("even", "odd"),
        train=split,
        test=split,
        image_shape=(4, 4, 1),
        statistics=((0.0,), (1 / 255,)),
    )


def _indices(dataset):
    return [int(round(value)) for images, _ in dataset for value in images.numpy()[:, 0, 0, 0]]


@pytest.mark.parametrize("stream", [False, True], ids=["array", "stream"])
def test_search_splits_are_disjoint_cover_and_reproducible(stream):
    dataset = Dataset(_indexed_source(stream=stream), augment=_NO_AUGMENT, seed=0)
    assert dataset.search_split_sizes(0.5) == (20, 20)
    assert dataset.search_split_sizes(0.3) == (12, 28)
    weight_indices, arch_indices = dataset.search_split_indices(0.5, seed=1)
    assert not set(weight_indices) & set(arch_indices)
    assert sorted(np.concatenate([weight_indices, arch_indices])) == list(range(40))

    weight, arch = dataset.search_splits(4, portion=0.5, seed=1)
    seen_weight = _indices(weight)
    assert sorted(seen_weight) == sorted(weight_indices)
    # The architecture half never ends: two epochs' worth of batches, each index twice.
    seen_arch = _indices(arch.take(10))
    assert sorted(seen_arch) == sorted(list(arch_indices) * 2)
    assert all(images.shape[0] == 4 for images, _ in weight)

    again_weight, again_arch = dataset.search_splits(4, portion=0.5, seed=1)
    assert _indices(again_weight) == seen_weight
    assert _indices(again_arch.take(10)) == seen_arch
    other_weight, _ = dataset.search_splits(4, portion=0.5, seed=2)
    assert sorted(_indices(other_weight)) != sorted(seen_weight)


def test_test_split_is_ordered_and_train_reshuffles_each_epoch():
    dataset = Dataset(_indexed_source(), augment=_NO_AUGMENT, seed=0)
    assert _indices(dataset.test(16)) == list(range(40))
    train = dataset.train(8, drop_remainder=True)
    first, second = _indices(train), _indices(train)
    assert len(first) == 40 and sorted(first) == sorted(second) == list(range(40))
    assert first != second
    assert _indices(Dataset(_indexed_source(), augment=_NO_AUGMENT, seed=0).train(8)) == first
    assert _indices(Dataset(_indexed_source(), augment=_NO_AUGMENT, seed=1).train(8)) != first


def test_augmented_batches_depend_only_on_the_seed(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        images = rng.integers(0, 256, (16, 8, 8), np.uint8)
        write_idx(str(tmp_path / IDX_FILES[(split, "images")]), images)
        write_idx(str(tmp_path / IDX_FILES[(split, "labels")]), np.arange(16, dtype=np.uint8) % 2)
    options = {"crop_padding": 2, "flip": True, "cutout": 3}

    def first_batches(seed):
        dataset = load_dataset(f"idx:{tmp_path}", seed=seed, augment=options)
        return [images.numpy() for images, _ in dataset.train(8)]

    first = first_batches(seed=5)
    np.testing.assert_array_equal(np.stack(first), np.stack(first_batches(seed=5)))
    assert not np.array_equal(np.stack(first), np.stack(first_batches(seed=6)))


def test_file_backed_folder_matches_in_memory_folder(tmp_path, monkeypatch):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for index, size in enumerate([(12, 10), (12, 10), (7, 9)]):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{index}.png")
    in_memory = load_dataset(f"folder:{tmp_path}")
    monkeypatch.setattr(folder_module, "MEMORY_BUDGET_BYTES", 0)
    from_files = load_dataset(f"folder:{tmp_path}")
    assert type(from_files._train).__name__ == "FileSplit"
    assert in_memory.info == from_files.info
    for split in ("train", "test"):
        expected, expected_labels = in_memory.samples(10, split=split)
        actual, actual_labels = from_files.samples(10, split=split)
        np.testing.assert_array_equal(actual_labels, expected_labels)
        np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_crop_keeps_shape_and_shifts_content():
    image = tf.ones([8, 8, 3])
    crops = [ops.pad_and_random_crop(image, 2, tf.constant([seed, 0])) for seed in range(8)]
    assert all(crop.shape == (8, 8, 3) for crop in crops)
    # Some crop reaches into the zero padding.
    assert any(float(tf.reduce_min(crop)) == 0.0 for crop in crops)


def test_flip_flips_left_right_for_some_seeds_only():
    image = tf.reshape(tf.range(12, dtype=tf.float32), [2, 6, 1])
    flipped = image[:, ::-1, :]
    outcomes = set()
    for seed in range(10):
        result = ops.random_flip(image, tf.constant([seed, 0])).numpy()
        assert np.array_equal(result, image.numpy()) or np.array_equal(result, flipped.numpy())
        outcomes.add(np.array_equal(result, flipped.numpy()))
    assert outcomes == {True, False}


def test_cutout_zeroes_one_square():
    image = tf.ones([16, 16, 2])
    full_squares = 0
    for seed in range(20):
        result = ops.cutout(image, 4, tf.constant([seed, 7])).numpy()
        rows, columns = np.nonzero(result[..., 0] == 0)
        assert np.array_equal(result[..., 0] == 0, result[..., 1] == 0)
        height, width = np.ptp(rows) + 1, np.ptp(columns) + 1
        assert len(rows) == height * width and height <= 4 and width <= 4
        full_squares += len(rows) == 16
    assert full_squares > 0


def test_imagenet_style_ops_and_channel_conversion():
    image = tf.cast(tf.random.stateless_uniform([30, 20, 3], [1, 2], 0, 255), tf.uint8)
    crop = ops.random_resized_crop(image, (8, 8), tf.constant([3, 4]))
    assert crop.shape == (8, 8, 3) and crop.dtype == tf.float32
    centre = ops.resize_and_center_crop(image, (8, 8))
    assert centre.shape == (8, 8, 3) and centre.dtype == tf.uint8
    assert ops.to_channels(image, 1).shape == (30, 20, 1)
    assert ops.to_channels(tf.concat([image, image[..., :1]], -1), 3).shape == (30, 20, 3)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.uint8)])
    def to_rgb(unknown):
        return ops.to_channels(unknown, 3)

    grey = to_rgb(image[..., :1]).numpy()
    assert grey.shape == (30, 20, 3) and np.array_equal(grey[..., 0], grey[..., 2])


def test_augment_defaults_and_validation():
    small = ops.resolve_augment(
        None, image_size=(32, 32), flip_default=True, imagenet_style_default=False
    )
    assert small == AugmentConfig(crop_padding=4, flip=True, cutout=0, imagenet_style=False)
    imagenet = ops.resolve_augment(
        {"cutout": 16}, image_size=(224, 224), flip_default=True, imagenet_style_default=True
    )
    assert (imagenet.crop_padding, imagenet.cutout, imagenet.imagenet_style) == (0, 16, True)
    bad = [
        ({"crop": 4}, "unknown augment key"),
        ({"crop_padding": True}, "integer"),
        ({"flip": "yes"}, "true or false"),
        ({"cutout": -1}, "0 or more"),
        ({"imagenet_style": True, "crop_padding": 4}, "exclude each other"),
        ({"cutout": 99}, "larger than"),
    ]
    for options, message in bad:
        with pytest.raises(UserError, match=message):
            ops.resolve_augment(
                options, image_size=(32, 32), flip_default=True, imagenet_style_default=False
            )


def test_bad_arguments_are_user_errors():
    dataset = Dataset(_indexed_source(), augment=_NO_AUGMENT)
    calls = [
        (lambda: dataset.train(0), "batch_size"),
        (lambda: dataset.search_split_sizes(1.0), "between 0 and 1"),
        (lambda: dataset.search_splits(32), "larger than a search half"),
        (lambda: dataset.samples(2, split="validation"), "'train' or 'test'"),
        (lambda: load_dataset("demo", max_examples=0), "max_examples"),
        (lambda: load_dataset("demo", input_size="big"), "input_size"),
        (lambda: load_dataset("demo", augment=["flip"]), "augment"),
        (lambda: load_dataset(""), "no dataset given"),
    ]
    for call, message in calls:
        with pytest.raises(UserError, match=message):
            call()


def test_imagenet_style_on_in_memory_images():
    dataset = Dataset(_indexed_source(), input_size=(6, 6), augment={"imagenet_style": True})
    assert dataset.augment_config.crop_padding == 0
    images, _ = next(iter(dataset.train(4)))
    assert images.shape == (4, 6, 6, 1)
    # Evaluation resizes and centre-crops each (constant) image: order and values survive.
    assert _indices(dataset.test(8)) == list(range(40))
