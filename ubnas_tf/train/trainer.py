"""The training-time model: a network wrapped with its loss and metrics for Keras `fit`.

The loss: cross-entropy with label smoothing (Szegedy et al., 2016), DARTS's auxiliary head
(weight 0.4 in EBNAS/UBNAS retraining, shared/reference/UBNAS.md) and knowledge distillation
from a float teacher (Hinton et al., 2015):
loss = (1 - alpha) * CE + alpha * T^2 * KL(softmax(t / T) || softmax(s / T)).
"""
from __future__ import annotations

import tensorflow as tf

__all__ = ["Trainer"]


class Trainer(tf.keras.Model):
    """Wraps a network for `fit`: the loss (label smoothing, auxiliary head, distillation) and
    the top-1/top-5 metrics. Only `network` is saved; the trainer is a training-time shell."""

    def __init__(self, network, *, num_classes, label_smoothing=0.0, aux_weight=0.0,
                 teacher=None, temperature=1.0, alpha=0.0, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.aux_weight = float(aux_weight)
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.temperature = float(temperature)
        self.alpha = float(alpha) if teacher is not None else 0.0
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")
        self.top1 = tf.keras.metrics.SparseCategoricalAccuracy(name="top1")
        self.top5 = tf.keras.metrics.SparseTopKCategoricalAccuracy(k=min(5, num_classes),
                                                                   name="top5")

    @property
    def metrics(self):
        return [self.loss_tracker, self.top1, self.top5]

    def call(self, images, training=False):
        outputs = self.network(images, training=training)
        return outputs[0] if isinstance(outputs, (list, tuple)) else outputs

    def _per_example_cross_entropy(self, labels, logits, smoothing):
        one_hot = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes, dtype=logits.dtype)
        return tf.keras.losses.categorical_crossentropy(
            one_hot, logits, from_logits=True, label_smoothing=smoothing)

    def _cross_entropy(self, labels, logits, smoothing):
        return tf.reduce_mean(self._per_example_cross_entropy(labels, logits, smoothing))

    def _distillation(self, teacher_logits, logits):
        t = self.temperature
        target = tf.nn.softmax(tf.cast(teacher_logits, logits.dtype) / t)
        log_student = tf.nn.log_softmax(logits / t)
        kl = tf.reduce_sum(target * (tf.math.log(target + 1e-12) - log_student), axis=-1)
        return tf.reduce_mean(kl) * t * t

    # No AutoGraph: the steps (and the layers they call) hold no tensor-dependent Python control
    # flow, and converting every layer's `call` made tracing the searched Fashion-MNIST
    # network's train step take 185 s instead of 117 s (2-core CPU under load; same graph,
    # 10,853 nodes; benchmarks/train_step.py measures the time to first step).
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        images, labels = data
        with tf.GradientTape() as tape:
            outputs = self.network(images, training=True)
            if isinstance(outputs, (list, tuple)):
                logits, aux_logits = outputs
            else:
                logits, aux_logits = outputs, None
            loss = self._cross_entropy(labels, logits, self.label_smoothing)
            if aux_logits is not None and self.aux_weight:
                loss += self.aux_weight * self._cross_entropy(labels, aux_logits,
                                                              self.label_smoothing)
            if self.teacher is not None and self.alpha:
                teacher_logits = self.teacher(images, training=False)
                loss = (1.0 - self.alpha) * loss + self.alpha * self._distillation(
                    teacher_logits, logits)
            if self.network.losses:
                loss += tf.add_n(self.network.losses)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            # Keras sums the replicas' gradients: each replica's mean loss divided by their
            # number gives the gradient of the global batch's mean loss.
            scaled_loss = loss / replicas if replicas > 1 else loss
        variables = self.network.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        # apply_gradients also applies each variable's constraint: the latent binary weights'
        # WeightClip keeps them in [-1, 1] after every step.
        self.optimizer.apply_gradients(zip(gradients, variables))
        self.loss_tracker.update_state(loss)
        self.top1.update_state(labels, logits)
        self.top5.update_state(labels, logits)
        return {metric.name: metric.result() for metric in self.metrics}

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data):
        images, labels = data
        logits = self(images, training=False)
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            # A replica's slice of the last, partial test batch may be empty: per-example
            # losses count each example once (an empty slice adds nothing, not a NaN mean).
            self.loss_tracker.update_state(
                self._per_example_cross_entropy(labels, logits, 0.0))
        else:
            self.loss_tracker.update_state(self._cross_entropy(labels, logits, 0.0))
        self.top1.update_state(labels, logits)
        self.top5.update_state(labels, logits)
        return {metric.name: metric.result() for metric in self.metrics}

