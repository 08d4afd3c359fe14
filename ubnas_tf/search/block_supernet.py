"""The supernet of a block-level search: QuickNet's template with a mixed op at every block.

The cell search (supernet.py) chooses the ops of a DARTS cell; measured on Fashion-MNIST, the
cell networks it can build stay 1.6+ points under QuickNet at equal OPs while QuickNet's
template with *random* blocks is 1.8 points above random cells (issue 14). A block-level search
keeps QuickNet's template (float stem, float transitions, full-width residual blocks:
`baselines.quicknet_template`) and chooses the op of each block among the binary space's ops:

    block_b(x) = sum_o w_bo * o_b(x),    w_b = softmax(alpha_b)    (DARTS's mixed op)

on all of the block's channels (a block is one op wide, not one of 14 edges: no partial
channels needed to afford it). The ops are the binary space's, built by `baselines.block_op`,
the definitions `baselines.quicknet(ops=...)` retrains; the module structure is the config's
`module` (default `quicknet`, the retrained block itself). Stem, transitions and head are
QuickNet's layers (`baselines.quicknet_stem_layers`, `transition.quicknet_transition_layers`,
`baselines.quicknet_head_layers`).

Like `Supernet`, it takes the op weights as an input of `call` and owns no architecture
parameter, so `search.steps.SearchSteps` trains it unchanged.
"""
from __future__ import annotations

import tensorflow as tf

from ubnas_tf.network.baselines import (block_op, quicknet_head_layers, quicknet_stem_layers,
                                        quicknet_template)
from ubnas_tf.network.transition import quicknet_transition_layers, set_blur_kernels
from ubnas_tf.search.shared_traces import TraceCache
from ubnas_tf.search.supernet import weighted_sum

__all__ = ["MixedBlock", "BlockSupernet"]


class MixedBlock(tf.keras.layers.Layer):
    """The candidate ops of one block, mixed by the block's op weights."""

    def __init__(self, primitives, width: int, prefix: str, structure, **kwargs):
        super().__init__(name=prefix, **kwargs)
        self.primitives = tuple(primitives)
        self.candidate_ops = [block_op(op_name, width, prefix, structure)
                              for op_name in self.primitives]

    def call(self, x, op_weights, training=None):
        return weighted_sum([op(x, training=training) for op in self.candidate_ops], op_weights)


class BlockSupernet(tf.keras.Model):
    """QuickNet's template (filters and blocks per section) with a `MixedBlock` per block.

    `call(images, op_weights)` with op weights [blocks, len(primitives)].
    """

    def __init__(self, info, *, filters, blocks, primitives, structure="quicknet", **kwargs):
        super().__init__(**kwargs)
        self.plan = quicknet_template(info, filters, blocks)
        self.primitives = tuple(primitives)
        self.image_shape = tuple(info.input_shape)
        self.stem_layers = quicknet_stem_layers(self.plan[0][1])
        transitions, mixed_blocks = {}, []
        for prefix, width, transition in self.plan:
            if transition:
                transitions[prefix] = quicknet_transition_layers(width, f"{prefix}_transition")
            mixed_blocks.append(MixedBlock(self.primitives, width, prefix, structure))
        self.transitions, self.mixed_blocks = transitions, mixed_blocks
        self.head_layers = quicknet_head_layers(info.num_classes)
        # SearchSteps clears the supernet's shared traces after tracing; a block supernet has
        # none (six mixed ops trace quickly).
        self.traces = TraceCache(enabled=False)

    @classmethod
    def from_config(cls, info, config: dict) -> "BlockSupernet":
        """The supernet of a block search config (template, ops, module structure)."""
        from ubnas_tf.search.block_architect import block_primitives

        template = config["template"]
        return cls(info, filters=template["filters"], blocks=template["blocks"],
                   primitives=block_primitives(config["primitives"]),
                   structure=config["module"], name="block_supernet")

    @property
    def block_count(self) -> int:
        return len(self.plan)

    def call(self, images, op_weights, training=None):
        return self.around_blocks(images, lambda index, x: self.mixed_blocks[index](
            x, op_weights[index], training=training), training=training)

    def around_blocks(self, images, block, training=None):
        """The stem, then `block(index, x)` for each block after its section's transition,
        then the head: the network the mixture (`call`) and a single path (search/oneshot.py)
        share."""
        x = images
        for layer in self.stem_layers:
            x = layer(x, training=training)
        for index, (prefix, _, _) in enumerate(self.plan):
            for layer in self.transitions.get(prefix, ()):
                x = layer(x, training=training)
            x = block(index, x)
        for layer in self.head_layers:
            x = layer(x, training=training)
        return x

    def build_variables(self, op_weights) -> None:
        """Create every weight with one eager pass on one image, then set the frozen blur
        kernels (as `baselines.quicknet` does once its model exists)."""
        self(tf.zeros([1, *self.image_shape]), op_weights)
        set_blur_kernels([layers[2] for layers in self.transitions.values()])
