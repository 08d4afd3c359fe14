"""Loading a saved model and evaluating a model on the test split of a dataset."""
from __future__ import annotations

import tensorflow as tf

from ubnas_tf.errors import UserError
from ubnas_tf.train.trainer import Trainer

__all__ = ["load_model", "check_model_fits", "evaluate", "evaluate_file"]


def load_model(path, *, allow_lambda: bool = False) -> tf.keras.Model:
    """Load a saved model for inference with the core's safe loader (`ubnas_tf.model_io`:
    Lambda layers refused unless `allow_lambda`, a missing or broken file a UserError)."""
    from ubnas_tf.model_io import load_model as safe_load
    from ubnas_tf.network import baselines  # noqa: F401  (registers FloatConvModule)

    return safe_load(path, allow_lambda=allow_lambda)


def check_model_fits(model, info, what="the model") -> None:
    expected = tuple(model.input_shape[1:])
    given = tuple(info.input_shape)
    if len(expected) != 3 or any(e is not None and e != g for e, g in zip(expected, given)):
        raise UserError(f"{what} takes images of {expected} but dataset {info.name} gives "
                        f"{given}: set data.input_size (and use a dataset with "
                        f"{expected[-1]} channels)")
    classes = model.output_shape[-1]
    if classes != info.num_classes:
        raise UserError(f"{what} predicts {classes} classes but dataset {info.name} has "
                        f"{info.num_classes}: use the dataset it was trained on")


# The key prefix of each split's figures: test_top1, val_top1, ...
_PREFIXES = {"test": "test", "validation": "val"}


def evaluate(model, data, batch_size: int = 256, *, top5: bool = False,
             split: str = "test") -> dict:
    """Top-1 (and top-5 when there are more than 10 classes, or when asked) of `model` (or of
    the network of a compiled `Trainer`) on the test split (keys ``test_top1``, ``test_loss``,
    ``test_top5``) or, with ``split="validation"``, on the validation split (``val_...``).
    Reads the split once."""
    info = data.info
    trainer = model
    if not isinstance(model, Trainer):
        trainer = Trainer(model, num_classes=info.num_classes)
        trainer.compile()
    if split not in _PREFIXES:
        raise ValueError(f"split must be one of {sorted(_PREFIXES)}, got {split!r}")
    batches = data.test(batch_size) if split == "test" else data.validation(batch_size)
    results = trainer.evaluate(batches, return_dict=True, verbose=0)
    prefix = _PREFIXES[split]
    metrics = {f"{prefix}_top1": float(results["top1"]), f"{prefix}_loss": float(results["loss"])}
    if info.num_classes > 10 or top5:
        metrics[f"{prefix}_top5"] = float(results["top5"])
    return metrics


def evaluate_file(path, dataset: str, *, batch_size: int = 256, data_dir=None, manual_dir=None,
                  max_examples=None, seed: int = 0, top5: bool = False,
                  allow_lambda: bool = False) -> dict:
    """Load a saved model and evaluate it on the test split of `dataset` (`max_examples`: a
    seeded subset of that many test images, for a quick look; `allow_lambda`: load Lambda
    layers, whose Python code runs on load: only for files you trust)."""
    from ubnas_tf.data import load_dataset

    model = load_model(path, allow_lambda=allow_lambda)
    shape = model.input_shape[1:3]
    data = load_dataset(dataset, data_dir=data_dir, manual_dir=manual_dir,
                        input_size=tuple(shape) if None not in shape else None,
                        max_test_examples=max_examples, seed=seed)
    check_model_fits(model, data.info, f"model {path}")
    return {**evaluate(model, data, batch_size, top5=top5), "dataset": data.info.name,
            "test_size": data.info.test_size}

