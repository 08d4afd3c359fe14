"""Named TFDS datasets through `tfds.testing.mock_data`, and TFDS errors (issue 3).

`mock_data` replaces the prepared files by random examples built from each dataset's features
(shape, dtype, number of classes), so these tests run offline with the real builders.
"""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ubnas_tf.data import load_dataset
from ubnas_tf.data.info import KNOWN_STATISTICS
from ubnas_tf.errors import UserError

_MOCK_EXAMPLES = 12

# name: (input_shape with input_size left native, classes, flip default, imagenet_style)
_NAMED = {
    "cifar10": ((32, 32, 3), 10, True, False),
    "cifar100": ((32, 32, 3), 100, True, False),
    "fashion_mnist": ((28, 28, 1), 10, True, False),
    "mnist": ((28, 28, 1), 10, False, False),
    "svhn_cropped": ((32, 32, 3), 10, False, False),
    "imagenette": ((224, 224, 3), 10, True, True),
    "imagenet2012": ((224, 224, 3), 1000, True, True),
}


@pytest.fixture
def mock_tfds():
    with tfds.testing.mock_data(
        num_examples=_MOCK_EXAMPLES, policy=tfds.testing.MockPolicy.USE_CODE
    ):
        yield


@pytest.mark.parametrize("name", sorted(_NAMED))
def test_named_dataset(mock_tfds, name):
    shape, classes, flip, imagenet_style = _NAMED[name]
    # Variable-size datasets are checked at a small input size to keep the test fast.
    input_size = 32 if imagenet_style else None
    dataset = load_dataset(name, input_size=input_size)
    info = dataset.info
    expected_shape = (32, 32, 3) if imagenet_style else shape
    assert info.input_shape == expected_shape
    assert info.num_classes == classes == len(info.class_names)
    assert (info.train_size, info.test_size) == (_MOCK_EXAMPLES, _MOCK_EXAMPLES)
    assert (info.mean, info.std) == tuple(map(tuple, KNOWN_STATISTICS[name]))
    config = dataset.augment_config
    assert (config.flip, config.imagenet_style) == (flip, imagenet_style)
    images, labels = next(iter(dataset.train(4)))
    assert images.shape == (4,) + expected_shape and images.dtype.name == "float32"
    assert labels.dtype.name == "int32" and np.all((0 <= labels) & (labels < classes))
    weight, arch = dataset.search_splits(2)
    assert next(iter(arch))[0].shape == (2,) + expected_shape
    assert sum(1 for _ in weight) == 3  # 6 examples, batches of 2, remainder dropped
    test_images, _ = dataset.samples(3)
    assert test_images.shape == (3,) + expected_shape


def test_variable_size_dataset_defaults_to_224(mock_tfds):
    dataset = load_dataset("imagenette", max_examples=2)
    assert dataset.info.input_shape == (224, 224, 3)
    assert dataset.info.train_size == 2
    assert dataset.samples(2)[0].shape == (2, 224, 224, 3)


def test_max_examples_caps_the_training_split_only(mock_tfds):
    dataset = load_dataset("cifar10", max_examples=5)
    assert (dataset.info.train_size, dataset.info.test_size) == (5, _MOCK_EXAMPLES)
    capped = load_dataset("cifar10", max_examples=5, max_test_examples=3)
    assert (capped.info.train_size, capped.info.test_size) == (5, 3)
    assert sum(int(images.shape[0]) for images, _ in dataset.train(2)) == 5


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UserError) as error:
        load_dataset("cifar11")
    message = str(error.value)
    assert "unknown dataset 'cifar11'" in message and "cifar10" in message
    assert "folder:PATH" in message and "\n" not in message


def test_non_image_dataset_is_refused():
    with pytest.raises(UserError, match="not an image-classification dataset"):
        load_dataset("imdb_reviews")


def test_missing_manual_files_are_named(tmp_path, monkeypatch):
    def no_manual_files(self, *args, **kwargs):
        # What TFDS raises when imagenet2012's manual_dir is empty.
        raise AssertionError(f"Manual directory {manual} does not exist or is empty.")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_manual_files)
    manual = tmp_path / "manual"
    with pytest.raises(UserError) as error:
        load_dataset("imagenet2012", data_dir=str(tmp_path), manual_dir=str(manual))
    message = str(error.value)
    assert "ILSVRC2012_img_train.tar" in message and "ILSVRC2012_img_val.tar" in message
    assert str(manual) in message and "\n" not in message


def test_failed_download_says_how_to_prepare_offline(tmp_path, monkeypatch):
    def offline(self, *args, **kwargs):
        raise ConnectionError("Failed to resolve 'www.cs.toronto.edu'")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(UserError) as error:
        load_dataset("cifar10", data_dir=str(tmp_path))
    message = str(error.value)
    assert "tfds build cifar10 --data_dir" in message and str(tmp_path) in message
