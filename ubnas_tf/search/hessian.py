"""The dominant eigenvalue of the Hessian of the validation loss w.r.t. the alphas.

RobustDARTS (Zela et al., "Understanding and Robustifying Differentiable Architecture Search",
ICLR 2020) found that a DARTS search degenerates (parameter-free ops, poor retrained accuracy)
when the validation loss grows sharp in the architecture: the dominant eigenvalue of
H = d^2 L_valid / d alpha^2 rises. It computes that eigenvalue once per epoch on validation
batches; so does `AlphaHessian`, with power iteration on Hessian-vector products

    v <- H v / ||H v||,    lambda = v . H v,      H v = d/d alpha ( dL/d alpha . v )

taken by two nested gradient tapes (never forming H: the binary space's 2 x 14 x 7 alphas
would make it 196 x 196, but a product costs one forward and two backward passes). The loss is
the cross-entropy alone (the regularizers are not part of RobustDARTS's criterion), on a fixed
set of batches, so that epochs are compared on the same data.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["hessian_vector_product", "dominant_eigenvalue", "AlphaHessian"]


def hessian_vector_product(loss_fn, parameters: list, vectors: list) -> list:
    """H v of the scalar `loss_fn()` w.r.t. `parameters` (tensors shaped like them), by
    nested tapes."""
    with tf.GradientTape(watch_accessed_variables=False) as outer:
        outer.watch(parameters)
        with tf.GradientTape(watch_accessed_variables=False) as inner:
            inner.watch(parameters)
            loss = loss_fn()
        gradients = inner.gradient(loss, parameters, unconnected_gradients="zero")
        projection = tf.add_n([tf.reduce_sum(g * v) for g, v in zip(gradients, vectors)])
    return outer.gradient(projection, parameters, unconnected_gradients="zero")


def dominant_eigenvalue(product, shapes, *, iterations: int, seed: int = 0) -> float:
    """Power iteration: the eigenvalue of largest magnitude of the symmetric operator
    `product(vectors) -> vectors` on tensors of `shapes`, after `iterations` products from a
    seeded random start (the same start every call, so epochs are compared alike)."""
    rng = np.random.default_rng(seed)
    vectors = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    norm = np.sqrt(sum(float(np.sum(v * v)) for v in vectors))
    vectors = [v / norm for v in vectors]
    eigenvalue = 0.0
    for _ in range(iterations):
        products = [np.asarray(p, np.float64) for p in product([tf.constant(v) for v in vectors])]
        eigenvalue = sum(float(np.sum(v * p)) for v, p in zip(vectors, products))
        norm = np.sqrt(sum(float(np.sum(p * p)) for p in products))
        if norm == 0.0:
            return 0.0
        vectors = [(p / norm).astype(np.float32) for p in products]
    return eigenvalue


class AlphaHessian:
    """lambda_max of d^2 CE_valid / d alpha^2 for a supernet and its architect.

    # Arguments
        supernet, architect: the search's network and architecture.
        batches: [(images, labels)] the fixed validation batches (global batches).
        iterations: power iterations per estimate.
    """

    def __init__(self, supernet, architect, batches, *, iterations: int):
        self.supernet, self.architect = supernet, architect
        self.batches = [(tf.constant(images), tf.constant(labels)) for images, labels in batches]
        self.iterations = int(iterations)
        self.alphas = [architect.alphas_normal, architect.alphas_reduce]
        self._product = tf.function(self._batch_product, autograph=False)

    def _batch_product(self, images, labels, vector_normal, vector_reduce):
        def loss():
            logits = self.supernet(images, self.architect.arch_weights(), training=True)
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

        return hessian_vector_product(loss, self.alphas, [vector_normal, vector_reduce])

    def product(self, vectors) -> list:
        """H v averaged over the batches (the Hessian of the mean loss over them)."""
        total = None
        for images, labels in self.batches:
            products = self._product(images, labels, *vectors)
            total = products if total is None else [a + b for a, b in zip(total, products)]
        return [t / len(self.batches) for t in total]

    def eigenvalue(self) -> float:
        return dominant_eigenvalue(self.product, [a.shape for a in self.alphas],
                                   iterations=self.iterations)
