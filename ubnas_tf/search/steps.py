"""The compiled steps of the bilevel search, and the Adam that updates both levels.

- `weight_step(images, labels)`: one Adam step of the supernet weights on a batch of the weight
  half, architecture weights held constant (they are not even watched by the tape).
- `arch_step(val_images, val_labels, train_images, train_labels, ramp)`: one Adam step of the
  architecture parameters on a batch of the architecture half, first order (DARTS's
  `unrolled=False`: the gradient of the validation loss at the current weights) or second
  order (DARTS eq. 7-8: at the weights after one virtual weight step w' = w - xi * dL_train/dw,
  minus xi times a finite-difference Hessian-vector product, eps = 0.01 / ||dL_val/dw'||).

Each step is one compiled function with fixed input shapes (the search batches drop their
remainder) traced once, `autograph=False` (no Python control flow on tensors to convert); on one
replica without XLA it keeps no Python graph once traced (`runtime_memory.GraphFreeFunction`).
With `recompute=True` the gradients come from `recompute.checkpointed_gradients`.
Under a `tf.distribute` strategy each replica computes its gradients, they are averaged with
one all-reduce, and every replica applies the same update to its own copy of the variables.
Batch statistics stay per replica (as PC-DARTS under DataParallel).

Every forward pass of both steps runs the supernet with `training=True`, as DARTS searches with
`model.train()`: every norm normalises with the statistics of its batch, and a Keras
BatchNormalization (module structures with `norm: batch_norm`) also updates its moving
statistics once per forward pass (four times in a second-order architecture step, as DARTS's
unrolled step); the search itself never reads them.
"""
from __future__ import annotations

import tensorflow as tf

from ubnas_tf.search.architect import Architect
from ubnas_tf.search.recompute import checkpointed_gradients
from ubnas_tf.search.runtime_memory import GraphFreeFunction, release_free_memory
from ubnas_tf.search.supernet import ArchWeights, Supernet

__all__ = ["FusedAdam", "SearchSteps", "cross_entropy"]


def _assign(variable, value):
    """Assign on this replica's copy (a replica may not `assign` a MirroredVariable)."""
    return tf.raw_ops.AssignVariableOp(resource=variable.handle, value=value)


def _mean_over_replicas(values):
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.MEAN, values)


class FusedAdam(tf.Module):
    """Adam with PyTorch's L2 weight decay and global-norm clipping; one fused op per variable.

    Per step: g <- clip_by_global_norm(g, clip) (as torch.nn.utils.clip_grad_norm_ before the
    step), g <- g + wd * w (torch.optim.Adam's weight_decay), then `ResourceApplyAdam`, which
    does m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2,
    w <- w - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps) in one kernel (its eps sits
    where TF's Adam puts it, not PyTorch's: a difference of order eps).

    The tf-keras Adam emits a dozen ops per variable (the naive supernet's optimizer alone added
    thousands of graph nodes); this one emits the fused kernel plus two for the weight decay.
    Slots, step count and learning rate are variables, so they reach the checkpoint.
    """

    def __init__(self, variables, *, learning_rate: float, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-8, weight_decay: float = 0.0,
                 clip_norm: float | None = None, name: str = "adam"):
        super().__init__(name=name)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.weight_decay = float(weight_decay)
        self.clip_norm = float(clip_norm) if clip_norm else None
        self.learning_rate = tf.Variable(float(learning_rate), trainable=False,
                                         name="learning_rate")
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.m = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False,
                              name=f"m_{index}") for index, v in enumerate(variables)]
        self.v = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False,
                              name=f"v_{index}") for index, v in enumerate(variables)]

    def apply(self, gradients, variables):
        """Apply (already all-reduced) gradients; returns the global norm before clipping.

        Written for few graph nodes per variable (each costs tracing time): one L2Loss for
        the norm, g * scale + wd * w, and the fused update; constants are made once.
        """
        norm = tf.sqrt(tf.add_n([tf.nn.l2_loss(g) for g in gradients]) * 2.0)
        scale = None
        if self.clip_norm:
            scale = self.clip_norm / tf.maximum(norm, self.clip_norm)
        decay = tf.constant(self.weight_decay) if self.weight_decay else None
        beta_1, beta_2 = tf.constant(self.beta_1), tf.constant(self.beta_2)
        epsilon = tf.constant(self.epsilon)
        step = tf.cast(self.iterations + 1, tf.float32)
        beta_1_power = tf.pow(beta_1, step)
        beta_2_power = tf.pow(beta_2, step)
        learning_rate = tf.identity(self.learning_rate)
        for variable, m, v, gradient in zip(variables, self.m, self.v, gradients):
            if scale is not None:
                gradient = gradient * scale
            if decay is not None:
                gradient = gradient + decay * tf.raw_ops.ReadVariableOp(
                    resource=variable.handle, dtype=variable.dtype)
            tf.raw_ops.ResourceApplyAdam(
                var=variable.handle, m=m.handle, v=v.handle, beta1_power=beta_1_power,
                beta2_power=beta_2_power, lr=learning_rate, beta1=beta_1, beta2=beta_2,
                epsilon=epsilon, grad=gradient, use_locking=False)
        tf.raw_ops.AssignAddVariableOp(resource=self.iterations.handle,
                                       value=tf.constant(1, tf.int64))
        return norm


def cross_entropy(labels, logits):
    """Mean sparse softmax cross-entropy and the number of correct top-1 predictions."""
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    predictions = tf.argmax(logits, axis=-1, output_type=labels.dtype)
    correct = tf.reduce_sum(tf.cast(tf.equal(predictions, labels), tf.float32))
    return loss, correct


class SearchSteps:
    """Builds the compiled weight and architecture steps of a search.

    # Arguments
        supernet, architect: the network and the architecture (variables already built).
        weight_optimizer, arch_optimizer: `FusedAdam`s over their variables.
        strategy: the `tf.distribute.Strategy` the variables were created under.
        order: 'first' or 'second' (DARTS's unrolled architecture step).
        jit_compile: compile the steps with XLA.
        recompute: recompute each cell's activations in the backward pass instead of keeping
            them (`recompute.checkpointed_gradients`): less memory, one more forward pass.
    """

    def __init__(self, supernet: Supernet, architect: Architect, weight_optimizer: FusedAdam,
                 arch_optimizer: FusedAdam, strategy: tf.distribute.Strategy, *,
                 order: str = "first", jit_compile: bool = False, recompute: bool = False):
        if order not in ("first", "second"):
            raise ValueError(f"order must be 'first' or 'second', got {order!r}")
        self.supernet = supernet
        self.architect = architect
        self.weight_optimizer = weight_optimizer
        self.arch_optimizer = arch_optimizer
        self.strategy = strategy
        self.order = order
        self.recompute = recompute
        self.traces = {"weight": 0, "arch": 0}
        # One replica, no XLA (the search's usual case): steps that keep no Python graph
        # (runtime_memory). Otherwise tf.function, which takes per-replica inputs and XLA.
        self.graph_free = not jit_compile and strategy.num_replicas_in_sync == 1
        if self.graph_free:
            self._weight_function = GraphFreeFunction(self._weight_step)
            self._arch_function = GraphFreeFunction(self._arch_step)
        else:
            options = dict(autograph=False, jit_compile=jit_compile or None)
            self._weight_function = tf.function(self._weight_step, **options)
            self._arch_function = tf.function(self._arch_step, **options)
        self._untraced = self.graph_free  # both steps get traced at the first call of either
        self._first_runs = {"weight", "arch"} if self.graph_free else set()
        # Fault injection for tests: a hook applied to the losses inside the steps.
        self.loss_hook = None

    # -- the compiled steps -------------------------------------------------------------------
    def weight_step(self, images, labels):
        """One weight step on a batch of the weight half; returns (mean loss, correct)."""
        self._trace_both(images, labels)
        return self._released_after_first("weight", self._weight_function(images, labels))

    def arch_step(self, images, labels, train_images, train_labels, ramp):
        """One architecture step on a batch of the architecture half (train_* for the second
        order's virtual step); returns (mean loss, correct)."""
        self._trace_both(train_images, train_labels)
        return self._released_after_first(
            "arch", self._arch_function(images, labels, train_images, train_labels, ramp))

    def graph_nodes(self, images, labels) -> dict:
        """Nodes of each step's own graph for batches like `images`, `labels`."""
        ramp = tf.TensorSpec([], tf.float32)
        if self.graph_free:
            return {"weight_step": self._weight_function.graph_nodes(images, labels),
                    "arch_step": self._arch_function.graph_nodes(images, labels, images, labels,
                                                                 ramp)}
        specs = [tf.TensorSpec(x.shape, x.dtype) for x in (images, labels)]
        return {"weight_step": len(self._weight_function.get_concrete_function(
                    *specs).graph.as_graph_def().node),
                "arch_step": len(self._arch_function.get_concrete_function(
                    *specs, *specs, ramp).graph.as_graph_def().node)}

    def _trace_both(self, images, labels):
        """Trace both steps for this batch shape, then drop their Python graphs.

        Both at once: they call the same shared edge functions (TraceCache), whose graphs the
        second trace needs; afterwards nothing needs them.
        """
        if not self._untraced:
            return
        self._untraced = False
        ramp = tf.TensorSpec([], tf.float32)
        self._weight_function.trace(images, labels)
        self._arch_function.trace(images, labels, images, labels, ramp)
        self._weight_function.release_graphs()
        self._arch_function.release_graphs()
        self.supernet.traces.clear()
        release_free_memory()

    def _released_after_first(self, step: str, outputs):
        # The runtime builds its executors at a function's first run and frees the scratch.
        if step in self._first_runs:
            self._first_runs.discard(step)
            release_free_memory()
        return outputs

    # -- helpers ------------------------------------------------------------------------------
    @property
    def weights(self):
        return self.supernet.trainable_variables

    def _constant_arch_weights(self):
        weights = self.architect.arch_weights()
        if not isinstance(weights, ArchWeights):  # a block search's [blocks, ops] tensor
            return tf.stop_gradient(weights)
        return ArchWeights(*(tf.stop_gradient(w) for w in (
            weights.normal_ops, weights.normal_edges, weights.reduce_ops, weights.reduce_edges)))

    def _loss_of_logits(self, labels, logits):
        loss, correct = cross_entropy(labels, logits)
        if self.loss_hook is not None:
            loss = self.loss_hook(loss)
        return loss, correct

    def _gradients(self, images, labels, sources, arch_weights_fn, extra_loss=None,
                   watch_arch=True):
        """(d(loss + extra_loss())/d sources, loss, correct) on one batch."""
        loss_fn = lambda logits: self._loss_of_logits(labels, logits)  # noqa: E731
        if self.recompute:
            return checkpointed_gradients(self.supernet, images, sources, arch_weights_fn,
                                          loss_fn, extra_loss=extra_loss, watch_arch=watch_arch)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(sources)
            loss, correct = loss_fn(self.supernet(images, arch_weights_fn(), training=True))
            total = loss if extra_loss is None else loss + extra_loss()
        return tape.gradient(total, sources), loss, correct

    def _reduce(self, loss, correct):
        strategy = self.strategy
        return (strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None))

    # -- weight step ------------------------------------------------------------------------
    def _weight_replica(self, images, labels):
        weights = self.weights
        gradients, loss, correct = self._gradients(
            images, labels, weights, self._constant_arch_weights, watch_arch=False)
        gradients = _mean_over_replicas(gradients)
        self.weight_optimizer.apply(gradients, weights)
        return loss, correct

    def _weight_step(self, images, labels):
        self.traces["weight"] += 1
        loss, correct = self.strategy.run(self._weight_replica, args=(images, labels))
        return self._reduce(loss, correct)

    # -- architecture step ------------------------------------------------------------------
    def _arch_gradients(self, images, labels, ramp):
        """d(L_val + reg)/d(arch) at the current weights; also returns loss and correct."""
        return self._gradients(images, labels, self.architect.parameters,
                               self.architect.arch_weights,
                               extra_loss=lambda: self.architect.regularization(ramp))

    def _first_order_replica(self, images, labels, train_images, train_labels, ramp):
        del train_images, train_labels
        gradients, loss, correct = self._arch_gradients(images, labels, ramp)
        self.arch_optimizer.apply(_mean_over_replicas(gradients), self.architect.parameters)
        return loss, correct

    def _second_order_replica(self, images, labels, train_images, train_labels, ramp):
        """DARTS's unrolled step (Liu et al. 2019, eq. 7-8; quark0/darts architect.py).

        The virtual step is plain gradient descent with the weight optimizer's learning rate
        and weight decay as xi (DARTS also adds the momentum buffer; Adam has none to reuse).
        """
        weights, parameters = self.weights, self.architect.parameters
        xi = tf.identity(self.weight_optimizer.learning_rate)
        decay = self.weight_optimizer.weight_decay
        originals = [tf.identity(w.read_value()) for w in weights]
        # w' = w - xi * (dL_train/dw + wd * w)
        train_gradients, _, _ = self._gradients(
            train_images, train_labels, weights, self._constant_arch_weights, watch_arch=False)
        train_gradients = _mean_over_replicas(train_gradients)
        for w, w0, g in zip(weights, originals, train_gradients):
            _assign(w, w0 - xi * (g + decay * w0))
        # dL_val(w', alpha)/d alpha and /d w'
        gradients, loss, correct = self._gradients(images, labels, parameters + weights,
                                                   self.architect.arch_weights)
        gradients = _mean_over_replicas(gradients)
        alpha_gradients, weight_gradients = gradients[:len(parameters)], gradients[len(parameters):]
        epsilon = 0.01 / (tf.linalg.global_norm(weight_gradients) + 1e-12)

        def train_alpha_gradients(sign):
            for w, w0, dw in zip(weights, originals, weight_gradients):
                _assign(w, w0 + sign * epsilon * dw)
            alpha_gradients, _, _ = self._gradients(train_images, train_labels, parameters,
                                                    self.architect.arch_weights)
            return _mean_over_replicas(alpha_gradients)

        plus = train_alpha_gradients(1.0)
        minus = train_alpha_gradients(-1.0)
        for w, w0 in zip(weights, originals):
            _assign(w, w0)
        with tf.GradientTape() as tape:
            regularization = self.architect.regularization(ramp)
        regularization_gradients = tape.gradient(regularization, parameters,
                                                 unconnected_gradients="zero")
        final = [a - xi * (p - m) / (2.0 * epsilon) + r for a, p, m, r in
                 zip(alpha_gradients, plus, minus, regularization_gradients)]
        self.arch_optimizer.apply(final, parameters)
        return loss, correct

    def _arch_step(self, images, labels, train_images, train_labels, ramp):
        self.traces["arch"] += 1
        replica = (self._second_order_replica if self.order == "second"
                   else self._first_order_replica)
        loss, correct = self.strategy.run(
            replica, args=(images, labels, train_images, train_labels, ramp))
        return self._reduce(loss, correct)
