"""The validation hold-out (issue 13): one class-stratified, seeded cut of the training split,
the same for retraining (`load_dataset(validation_fraction=...)`) and for tuning."""
import math

import numpy as np
import pytest

from ubnas_tf.data import load_dataset
from ubnas_tf.data.dataset import Dataset
from ubnas_tf.data.idx import read_idx_folder
from ubnas_tf.data.sources import open_source
from ubnas_tf.data.splits import holdout_indices
from ubnas_tf.errors import UserError

from test_data_pipeline import _NO_AUGMENT, _indexed_source, _indices


@pytest.mark.parametrize("fraction", [0.1, 0.15, 0.5])
def test_holdout_is_disjoint_stratified_and_seeded(fraction):
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    np.random.default_rng(0).shuffle(labels)
    kept, held = holdout_indices(labels, fraction, seed=7)
    assert not set(kept) & set(held)
    assert sorted(np.concatenate([kept, held])) == list(range(100))
    assert list(held) == sorted(held) and list(kept) == sorted(kept)
    assert len(held) == round(fraction * 100)
    for label, count in ((0, 50), (1, 30), (2, 20)):
        share = fraction * count  # each class gives its share, rounded one way or the other
        assert math.floor(share) <= np.sum(labels[held] == label) <= math.ceil(share)
    again_kept, again_held = holdout_indices(labels.copy(), fraction, seed=7)
    assert list(again_held) == list(held) and list(again_kept) == list(kept)
    assert list(holdout_indices(labels, fraction, seed=8)[1]) != list(held)


def test_holdout_refuses_an_empty_split():
    with pytest.raises(UserError, match="data.validation_fraction=0.01 of 20 training"):
        holdout_indices(np.zeros(20), 0.01, seed=0)
    with pytest.raises(UserError, match=r"data.validation_fraction must be in \[0, 1\)"):
        load_dataset("demo", validation_fraction=1.0)


@pytest.mark.parametrize("stream", [False, True], ids=["array", "stream"])
def test_validation_split_is_held_out_of_training(stream):
    dataset = Dataset(_indexed_source(stream=stream), augment=_NO_AUGMENT, seed=3,
                      validation_fraction=0.25)
    assert (dataset.info.train_size, dataset.info.validation_size) == (30, 10)
    validation, train = _indices(dataset.validation(4)), _indices(dataset.train(4))
    assert not set(validation) & set(train)
    assert sorted(validation + train) == list(range(40))
    assert _indices(dataset.validation(4)) == validation  # a fixed order
    if not stream:  # labels in memory: stratified (label = index % 2)
        assert sum(index % 2 for index in validation) == 5
    again = Dataset(_indexed_source(stream=stream), augment=_NO_AUGMENT, seed=3,
                    validation_fraction=0.25)
    assert _indices(again.validation(4)) == validation
    assert not Dataset(_indexed_source(), augment=_NO_AUGMENT).info.validation_size


def test_tuner_and_training_hold_out_the_same_images(tmp_path):
    from ubnas_tf.tune.data import prepare_data

    manifest = prepare_data(tmp_path, "demo", validation=0.2, max_examples=100, seed=3)
    source = open_source("demo", data_dir=None, manual_dir=None, max_examples=100, seed=3,
                         skip_corrupt=False, input_size=None)
    _, held = holdout_indices(source.train.labels, 0.2, seed=3)
    tuner_images, tuner_labels = read_idx_folder(str(tmp_path / "data"))["test"]
    np.testing.assert_array_equal(tuner_images, source.train.images[held])
    np.testing.assert_array_equal(tuner_labels, source.train.labels[held])
    assert manifest["validation_size"] == len(held) == 20

    data = load_dataset("demo", max_examples=100, seed=3, validation_fraction=0.2)
    images, labels = next(iter(data.validation(100)))
    mean, std = np.asarray(data.info.mean), np.asarray(data.info.std)
    pixels = np.round((images.numpy() * std + mean) * 255).astype(np.uint8)
    np.testing.assert_array_equal(pixels, source.train.images[held])
    np.testing.assert_array_equal(labels.numpy(), source.train.labels[held])
