"""ImageNet end to end on `tfds.testing.mock_data` (224x224x3, 1000 classes, 4 images): a
search step behind PC-DARTS's stem, a retraining step behind EBNAS's stem (auxiliary head
on), conversion with every binary conv fused and verified, and the host benchmark.

Tiny sizes (C=8 and 16, 3 cells) keep it to one step of each; what it checks is the path at
ImageNet's input size and class count, the shipped ImageNet configs underneath.
"""
import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from test_search import FOUR_OPS
from ubnas_tf import config as config_lib
from ubnas_tf.export.benchmark import benchmark_file
from ubnas_tf.export.pipeline import export_model
from ubnas_tf.search.run import run_search
from ubnas_tf.train.run import run_training

TINY = ["cells=5", "batch_size=2", "epochs=1", "max_examples=4"]
SEARCH = TINY + ["channels=8", "nodes=2", "multiplier=2", "warmup_epochs=0",
                 "early_stop.patience=null", "data.portion=0.5", FOUR_OPS]
TRAIN = TINY + ["channels=16", "two_stage.enabled=false", "saved_model=false",
                "data.validation_fraction=0",  # 4 images: no validation split to hold out
                "tensorboard=false"]


def _images_as_tensors(self, split, decoders=None, read_config=None, **kwargs):
    """Four random 240x260 ImageNet examples per split, as `builder.as_dataset` gives them.

    mock_data's own examples come from a Python generator, whose iterator state TensorFlow
    cannot save; the search checkpoints the iterator of its architecture half (as it would
    the real TFRecords'), so the examples are tensors here."""
    del self, decoders, read_config, kwargs
    rng = np.random.default_rng(0 if split == "train" else 1)
    return tf.data.Dataset.from_tensor_slices({
        "image": rng.integers(0, 256, (4, 240, 260, 3), dtype=np.uint8),
        "label": rng.integers(0, 1000, 4),
        "file_name": [f"{split}_{i}.JPEG" for i in range(4)],
    })


@pytest.mark.slow
def test_imagenet_search_train_convert_benchmark(tmp_path):
    search_config = config_lib.load(
        "search", files=[config_lib.CONFIG_DIR / "search_imagenet.yaml"], overrides=SEARCH)
    train_config = config_lib.load(
        "train", files=[config_lib.CONFIG_DIR / "train_imagenet.yaml"], overrides=TRAIN)
    assert (search_config["stem"], train_config["stem"]) == ("imagenet", "ebnas_imagenet")
    with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE,
                                as_dataset_fn=_images_as_tensors):
        searched = run_search(search_config, dataset="imagenet2012",
                              output_dir=tmp_path / "search", print_fn=lambda *a, **k: None)
        assert searched.epochs_run == 1 and searched.genotype.space == "binary"

        metrics = run_training(train_config, dataset="imagenet2012",
                               output_dir=tmp_path / "train", genotype=searched.genotype,
                               verbose=0)
        summary = (tmp_path / "train" / "summary.txt").read_text()
        assert "stem/stem0_conv1" in summary and "stem/stem1_conv" in summary
        assert metrics["ops"] > 0

        report = export_model(tmp_path / "train" / "model.h5", dataset="imagenet2012", samples=2,
                              report_path=tmp_path / "report.json")
    assert report["binary_convs"] > 0
    assert report["fused_binary_convs"] == report["binary_convs"]
    assert report["unfused_binary_convs"] == [] and report["unsupported_ops"] == []
    assert report["verify"]["passed"]
    assert json.loads((tmp_path / "report.json").read_text())["fused_binary_convs"] > 0

    bench = benchmark_file(tmp_path / "train" / "model.tflite", runs=2, warmup=1)
    assert bench["latency"]["mean_ms"] > 0 and bench["float"]["latency"]["mean_ms"] > 0
