"""IDX files, the shipped demo subset, and Debian's Fashion-MNIST files (issue 3)."""

import gzip
import os

import numpy as np
import pytest

from ubnas_tf.data import DEMO_DIR, FASHION_MNIST_LOCAL_DIR, load_dataset
from ubnas_tf.data.idx import IDX_FILES, read_idx, read_idx_folder, write_idx
from ubnas_tf.data.info import FASHION_MNIST_CLASS_NAMES, KNOWN_STATISTICS
from ubnas_tf.errors import UserError


def _write_idx_folder(folder, train=24, test=8, size=(6, 5), classes=3):
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        images = rng.integers(0, 256, (count,) + size, dtype=np.uint8)
        labels = (np.arange(count) % classes).astype(np.uint8)
        write_idx(os.path.join(folder, IDX_FILES[(split, "images")]), images)
        write_idx(os.path.join(folder, IDX_FILES[(split, "labels")]), labels)
    return folder


def test_write_then_read_round_trips(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte.gz", "a-idx3-ubyte"):
        write_idx(str(tmp_path / name), array)
        np.testing.assert_array_equal(read_idx(str(tmp_path / name)), array)


def test_idx_folder_loads_with_native_size_and_digit_defaults(tmp_path):
    folder = _write_idx_folder(str(tmp_path))
    dataset = load_dataset(f"idx:{folder}")
    info = dataset.info
    assert (info.num_classes, info.input_shape) == (3, (6, 5, 1))
    assert (info.train_size, info.test_size) == (24, 8)
    assert info.class_names == ("0", "1", "2")
    assert len(info.mean) == len(info.std) == 1
    # IDX mostly carries digits: no flips unless asked for.
    assert dataset.augment_config.flip is False
    images, labels = dataset.samples(8)
    assert images.shape == (8, 6, 5, 1) and images.dtype == np.float32
    np.testing.assert_array_equal(labels, np.arange(8) % 3)


def test_bad_magic_number_is_a_user_error(tmp_path):
    folder = _write_idx_folder(str(tmp_path))
    with gzip.open(os.path.join(folder, IDX_FILES[("train", "images")]), "wb") as stream:
        stream.write(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(UserError, match="bad IDX magic number 0x12345678"):
        load_dataset(f"idx:{folder}")


def test_swapped_or_truncated_files_are_user_errors(tmp_path):
    folder = _write_idx_folder(str(tmp_path))
    images = os.path.join(folder, IDX_FILES[("test", "images")])
    labels = os.path.join(folder, IDX_FILES[("test", "labels")])
    os.replace(images, images + ".tmp")
    os.replace(labels, images)
    os.replace(images + ".tmp", labels)
    with pytest.raises(UserError, match="swapped"):
        read_idx_folder(folder)
    write_idx(images, np.zeros((4, 6, 5), np.uint8))
    with gzip.open(images, "rb") as stream:
        truncated = stream.read()[:-7]
    with gzip.open(images, "wb") as stream:
        stream.write(truncated)
    with pytest.raises(UserError, match="replace it with an intact copy"):
        read_idx(images)
    with open(labels, "wb") as stream:
        stream.write(b"not gzip at all")
    with pytest.raises(UserError, match="cannot read IDX file"):
        read_idx(labels)


def test_missing_idx_file_names_the_files(tmp_path):
    folder = _write_idx_folder(str(tmp_path))
    os.remove(os.path.join(folder, IDX_FILES[("test", "labels")]))
    with pytest.raises(UserError) as error:
        load_dataset(f"idx:{folder}")
    message = str(error.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and folder in message
    assert "\n" not in message
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(f"idx:{tmp_path / 'nowhere'}")
    with pytest.raises(UserError, match="names no folder"):
        load_dataset("idx:")


def test_demo_subset_is_class_balanced_fashion_mnist():
    train = read_idx_folder(DEMO_DIR)["train"]
    test = read_idx_folder(DEMO_DIR)["test"]
    assert train[0].shape == (5000, 28, 28, 1) and test[0].shape == (1000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(train[1]), [500] * 10)
    np.testing.assert_array_equal(np.bincount(test[1]), [100] * 10)
    # The licence notice travels with the data, and the whole subset stays small.
    assert "Zalando" in open(os.path.join(DEMO_DIR, "LICENSE")).read()
    size = sum(os.path.getsize(os.path.join(DEMO_DIR, name)) for name in IDX_FILES.values())
    assert size < 4 * 1024 * 1024

    dataset = load_dataset("demo")
    info = dataset.info
    assert (info.num_classes, info.input_shape) == (10, (28, 28, 1))
    assert (info.train_size, info.test_size) == (5000, 1000)
    assert info.class_names == FASHION_MNIST_CLASS_NAMES
    assert dataset.augment_config.flip is True and dataset.augment_config.crop_padding == 4
    # Normalised with Fashion-MNIST's statistics whatever the subset (a model trained with
    # max_examples sees the inputs evaluate.py gives it), which the demo's own images match.
    assert (info.mean, info.std) == KNOWN_STATISTICS["fashion_mnist"]
    assert load_dataset("demo", max_examples=50).info.mean == info.mean
    pixels = train[0] / 255.0
    np.testing.assert_allclose(pixels.mean(), KNOWN_STATISTICS["fashion_mnist"][0], atol=0.01)
    np.testing.assert_allclose(pixels.std(), KNOWN_STATISTICS["fashion_mnist"][1], atol=0.01)


def test_demo_resized_and_capped():
    dataset = load_dataset("demo", input_size=32, max_examples=100, seed=3)
    assert dataset.info.input_shape == (32, 32, 1)
    # max_examples caps the training split only (issue 18.12); max_test_examples the test split
    assert (dataset.info.train_size, dataset.info.test_size) == (100, 1000)
    capped = load_dataset("demo", max_examples=100, max_test_examples=50, seed=3)
    assert (capped.info.train_size, capped.info.test_size) == (100, 50)
    images, labels = next(iter(dataset.train(16)))
    assert images.shape == (16, 32, 32, 1) and labels.dtype.name == "int32"


@pytest.mark.skipif(
    not os.path.exists(os.path.join(FASHION_MNIST_LOCAL_DIR, IDX_FILES[("train", "images")])),
    reason=f"Debian's Fashion-MNIST IDX files are not in {FASHION_MNIST_LOCAL_DIR} "
    "(apt install dataset-fashion-mnist)",
)
def test_debian_fashion_mnist_files():
    splits = read_idx_folder(FASHION_MNIST_LOCAL_DIR)
    assert splits["train"][0].shape == (60000, 28, 28, 1)
    assert splits["test"][0].shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(splits["train"][1]), [6000] * 10)
    # The constants used for TFDS's fashion_mnist are these files' statistics (computed from
    # the histogram of pixel values, to avoid a float copy of 47 million pixels).
    counts = np.bincount(splits["train"][0].ravel(), minlength=256)
    values = np.arange(256) / 255.0
    mean = (counts * values).sum() / counts.sum()
    std = np.sqrt((counts * (values - mean) ** 2).sum() / counts.sum())
    np.testing.assert_allclose(mean, KNOWN_STATISTICS["fashion_mnist"][0][0], atol=1e-4)
    np.testing.assert_allclose(std, KNOWN_STATISTICS["fashion_mnist"][1][0], atol=1e-4)

    dataset = load_dataset("fashion_mnist_local", max_examples=200)
    assert dataset.info.class_names == FASHION_MNIST_CLASS_NAMES
    assert dataset.info.input_shape == (28, 28, 1)
    assert dataset.samples(5, split="train")[0].shape == (5, 28, 28, 1)
