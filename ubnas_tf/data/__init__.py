"""The data layer: every tool reads its images through `load_dataset` (issue 3).

    from ubnas_tf.data import load_dataset
    dataset = load_dataset("cifar10", input_size=32, max_examples=1000, seed=0)
    dataset.info.num_classes, dataset.info.input_shape       # facts for the network builder
    weight_ds, arch_ds = dataset.search_splits(64, portion=0.5)
    test_ds = dataset.test(256)

Modules, in the order the data flows: `idx` (MNIST-format files), `sources` (the readers behind
each spec: IDX, the shipped demo, `folder`, `tfds_source`), `augment` (image ops), `pipeline`
(tf.data), `dataset` (`load_dataset` and `Dataset`), `info` (`DatasetInfo`, statistics).
"""

from ubnas_tf.data.augment import AUGMENT_KEYS, AugmentConfig
from ubnas_tf.data.dataset import Dataset, load_dataset
from ubnas_tf.data.info import DatasetInfo
from ubnas_tf.data.sources import DEMO_DIR, FASHION_MNIST_LOCAL_DIR

__all__ = [
    "AUGMENT_KEYS",
    "AugmentConfig",
    "DEMO_DIR",
    "Dataset",
    "DatasetInfo",
    "FASHION_MNIST_LOCAL_DIR",
    "load_dataset",
]
