"""Step times of the ImageNet configs, and what a whole search and retraining would cost.

    python benchmarks/imagenet_steps.py [--search_batch 4] [--train_batch 4] [--steps 3]
                                        [--json out.json]

Measures, on random 224x224x3 images and 1000 classes, on whatever device TensorFlow sees:
- a search step (one weight step + one first-order architecture step) of the supernet of
  configs/search_imagenet.yaml (PC-DARTS's ImageNet stem, 8 cells, C=16, K=2);
- a retraining step (forward, backward with the auxiliary head, Adam) of EBNAS's ImageNet
  network (configs/train_imagenet.yaml + configs/genotypes/EBNAS.json: 14 cells, C=96),
and scales the per-image times to the configs' budgets: search 50 epochs over the 128,116
weight images (architecture steps, one per weight step, in the 15 epochs after warm-up);
retraining 2 stages x 100 epochs over 1,281,167 images. The median of `--steps` timed steps
after two untimed ones (tracing). Small batches: the per-image time at the configs' batch of
256 is lower on a GPU (better occupancy), so these figures bound the cost from above.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import types

import ubnas_tf  # noqa: F401  (Keras 2 API first)
import tensorflow as tf

from ubnas_tf import config as config_lib
from ubnas_tf.network.genotype_network import build_from_config
from ubnas_tf.search.run import build_search_steps
from ubnas_tf.search_space.genotype import published

IMAGENET_TRAIN = 1_281_167
INFO = types.SimpleNamespace(input_shape=(224, 224, 3), num_classes=1000)


def _median_seconds(step, steps: int) -> float:
    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _batch(size: int):
    images = tf.random.normal([size, 224, 224, 3])
    labels = tf.random.uniform([size], 0, 1000, tf.int32)
    return images, labels


def search_step_seconds(batch: int, steps: int) -> dict:
    config = config_lib.load("search", files=[config_lib.CONFIG_DIR / "search_imagenet.yaml"],
                             overrides=[f"batch_size={batch}"])
    search = build_search_steps(config, INFO)
    images, labels = _batch(batch)
    arch_images, arch_labels = _batch(batch)
    weight = _median_seconds(lambda: search.weight_step(images, labels)[0].numpy(), steps)
    arch = _median_seconds(lambda: search.arch_step(arch_images, arch_labels, images, labels,
                                                    tf.constant(1.0))[0].numpy(), steps)
    n_weight = int(config["max_examples"] * config["data"]["portion"])
    arch_epochs = config["epochs"] - config["warmup_epochs"]
    total = (config["epochs"] * weight + arch_epochs * arch) * n_weight / batch
    return {"batch": batch, "weight_step_s": weight, "arch_step_s": arch,
            "weight_images": n_weight, "epochs": config["epochs"], "arch_epochs": arch_epochs,
            "search_hours_one_device": total / 3600}


def train_step_seconds(batch: int, steps: int) -> dict:
    config = config_lib.load("train", files=[config_lib.CONFIG_DIR / "train_imagenet.yaml"])
    model = build_from_config(published("EBNAS"), INFO, config)
    optimizer = tf.keras.optimizers.Adam(config["optimizer"]["lr"])
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    images, labels = _batch(batch)
    weight = config["auxiliary"]["weight"]

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits, aux = model(images, training=True)
            value = loss(labels, logits) + weight * loss(labels, aux)
        gradients = tape.gradient(value, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return value

    seconds = _median_seconds(lambda: step().numpy(), steps)
    stages = 2 if config["two_stage"]["enabled"] else 1
    total = stages * config["epochs"] * IMAGENET_TRAIN / batch * seconds
    return {"batch": batch, "step_s": seconds, "epochs": config["epochs"], "stages": stages,
            "train_hours_one_device": total / 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--search_batch", type=int, default=4)
    parser.add_argument("--train_batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    devices = [device.name for device in tf.config.list_logical_devices()]
    result = {"devices": devices,
              "search": search_step_seconds(args.search_batch, args.steps),
              "train": train_step_seconds(args.train_batch, args.steps)}
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
