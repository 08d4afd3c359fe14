"""The optimizer and learning-rate schedule of a retraining (EBNAS/UBNAS: Adam with cosine
decay, shared/reference/UBNAS.md)."""
from __future__ import annotations

import tensorflow as tf

from ubnas_tf.errors import UserError

__all__ = ["learning_rate_schedule", "make_optimizer"]


def learning_rate_schedule(settings: dict, *, total_steps: int):
    """Cosine decay from `lr` to `lr_min` over `total_steps` (Loshchilov & Hutter, SGDR, without
    restarts), or a constant `lr`."""
    lr = float(settings.get("lr", 1e-3))
    schedule_name = settings.get("schedule", "cosine")
    if schedule_name == "cosine":
        lr_min = float(settings.get("lr_min") or 0.0)
        return tf.keras.optimizers.schedules.CosineDecay(
            lr, decay_steps=max(1, total_steps), alpha=lr_min / lr if lr else 0.0)
    if schedule_name == "constant":
        return lr
    raise UserError(f"optimizer.schedule={schedule_name!r} is not known: use cosine or constant")


def make_optimizer(settings: dict, *, total_steps: int):
    """Adam (AdamW with weight decay) or SGD, with `learning_rate_schedule`."""
    name = settings.get("name", "adam")
    schedule = learning_rate_schedule(settings, total_steps=total_steps)
    clip = settings.get("grad_clip")
    extra = {"global_clipnorm": float(clip)} if clip else {}
    weight_decay = float(settings.get("weight_decay") or 0.0)
    if name == "adam":
        if weight_decay:
            optimizer = tf.keras.optimizers.AdamW(schedule, weight_decay=weight_decay, **extra)
            # Decay the conv and dense kernels only, not BN, biases and PReLU slopes.
            optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "alpha"])
            return optimizer
        return tf.keras.optimizers.Adam(schedule, **extra)
    if name == "sgd":
        return tf.keras.optimizers.SGD(schedule, momentum=float(settings.get("momentum", 0.9)),
                                       weight_decay=weight_decay or None, **extra)
    raise UserError(f"optimizer.name={name!r} is not known: use adam or sgd")

