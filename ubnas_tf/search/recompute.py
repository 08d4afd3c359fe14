"""Gradients of the supernet loss with each cell's activations recomputed in the backward pass.

A supernet step keeps every intermediate tensor of every cell (7 ops per edge, 14 edges per
cell) alive from the forward pass until its backward pass: that is most of a search step's
tensor memory. Gradient checkpointing at cell boundaries (Chen et al. 2016, "Training Deep Nets
with Sublinear Memory Cost") keeps only the cells' outputs; on the way back each cell is run
again under its own tape, just before its gradient is needed, so at most one cell's
intermediates are alive at a time. The price is one more forward pass of the cells.

The gradients are the same as the plain tape's (tested): the cells run in training mode, so
every norm uses the statistics of its batch, the same in both passes. A Keras
BatchNormalization (`norm: batch_norm`) also updates its moving statistics in each pass: the
recomputation puts back the values the forward pass left, so they move once per step, as with
the plain tape (tested).
"""
from __future__ import annotations

import tensorflow as tf

__all__ = ["checkpointed_gradients"]


def _add(total, part):
    if part is None:
        return total
    return part if total is None else total + part


def checkpointed_gradients(supernet, images, sources, arch_weights_fn, loss_fn, *,
                           extra_loss=None, watch_arch: bool = True):
    """(gradients of loss + extra_loss() w.r.t. `sources`, loss, correct).

    # Arguments
        supernet: a `Supernet`.
        sources: variables to differentiate (supernet weights and/or architecture parameters).
        arch_weights_fn: () -> `ArchWeights`, computed from the architecture parameters.
        loss_fn: logits -> (loss, correct).
        extra_loss: () -> scalar added to the loss (the architecture regularizers), or None.
        watch_arch: whether gradients flow into the architecture weights (False in the weight
            step, where they are constants: the cells then skip that part of their backward).
    """
    sources = list(sources)
    position = {variable.ref(): index for index, variable in enumerate(sources)}
    gradients = [None] * len(sources)

    def collect(variables, parts):
        for variable, part in zip(variables, parts):
            gradients[position[variable.ref()]] = _add(gradients[position[variable.ref()]], part)

    # Stem and architecture weights: recorded, and cheap to keep.
    with tf.GradientTape(watch_accessed_variables=False) as stem_tape:
        stem_tape.watch(sources)
        arch = arch_weights_fn()
        stems = supernet.stem(images, training=True)
    # Forward through the cells with no tape: only the cells' outputs stay alive.
    states = list(stems)
    for cell in supernet.search_cells:
        states.append(supernet.run_cell(cell, states[-2], states[-1], arch, training=True))

    with tf.GradientTape(watch_accessed_variables=False) as head_tape:
        head_tape.watch(sources)
        head_tape.watch(states[-1])
        loss, correct = loss_fn(supernet.head(states[-1]))
        total = loss if extra_loss is None else loss + extra_loss()
    head_gradients = head_tape.gradient(total, [states[-1]] + sources)
    collect(sources, head_gradients[1:])

    state_gradients = {len(states) - 1: head_gradients[0]}
    # Per cell type (reduction or not): gradients of its (op weights, edge weights).
    arch_gradients = {False: [None, None], True: [None, None]}
    for index in reversed(range(2, len(states))):
        cell = supernet.search_cells[index - 2]
        upstream = state_gradients.pop(index)
        # The recomputation waits for its cell's gradient: without this dependency the executor
        # would recompute every cell as soon as its inputs exist, all alive at once.
        with tf.control_dependencies([upstream]):
            s0, s1 = tf.identity(states[index - 2]), tf.identity(states[index - 1])
        cell_sources = [v for v in cell.trainable_variables if v.ref() in position]
        op_weights, edge_weights = arch.for_cell(cell.reduction)
        watched = [s0, s1] + ([op_weights, edge_weights] if watch_arch else [])
        # Moving statistics (none with BatchStatsNorm: nothing added to the graph) as the
        # forward pass left them; the recomputation would update them a second time.
        state = cell.non_trainable_variables
        kept = [tf.identity(variable) for variable in state]
        with tf.GradientTape(watch_accessed_variables=False) as cell_tape:
            cell_tape.watch(watched + cell_sources)
            output = cell(s0, s1, op_weights, edge_weights, training=True)
        for variable, value in zip(state, kept):
            variable.assign(value)
        parts = cell_tape.gradient(output, watched + cell_sources, output_gradients=upstream)
        for offset in (0, 1):
            state = index - 2 + offset
            state_gradients[state] = _add(state_gradients.get(state), parts[offset])
        if watch_arch:
            totals = arch_gradients[cell.reduction]
            totals[:] = [_add(total, part) for total, part in zip(totals, parts[2:4])]
        collect(cell_sources, parts[len(watched):])

    # States 0 and 1 are the stem's two outputs (one tensor behind the CIFAR stem).
    if stems[0] is stems[1]:
        targets = [stems[0]]
        upstream = [_add(state_gradients.get(0), state_gradients.get(1))]
    else:
        targets = list(stems)
        upstream = [state_gradients.get(0), state_gradients.get(1)]
    for reduction, totals in arch_gradients.items():
        for tensor, gradient in zip(arch.for_cell(reduction), totals):
            if gradient is not None:
                targets.append(tensor)
                upstream.append(gradient)
    collect(sources, stem_tape.gradient(targets, sources, output_gradients=upstream))
    return gradients, loss, correct
