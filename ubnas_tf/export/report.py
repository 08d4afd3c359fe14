"""What a `.tflite` holds: op counts, ops LCE's runtime lacks, and binary convs left unfused.

Facts from Larq Compute Engine 0.16 (shared/reference/UBNAS.md, "Conversion facts", and LCE's
`larq_compute_engine/tflite/kernels/lce_ops_register.h`):

- LCE's runtime registers four custom ops (`LceQuantize`, `LceDequantize`, `LceBconv2d`,
  `LceBMaxPool2d`) on top of TFLite's builtin op resolver; any other custom op cannot run.
- A binary convolution is fused into `LceBconv2d` only when its input quantizer is a sign in
  larq's form (`larq.math.sign`), its kernel quantizer is +-scale per output channel, its
  groups have a multiple of 32 input channels, and, off the arm target, its `same` padding
  pads with ones (`pad_values=1`). Depthwise, separable and dense layers are never binarized.
"""
from __future__ import annotations

import collections
import dataclasses

__all__ = [
    "LCE_CUSTOM_OPS",
    "op_counts",
    "unsupported_ops",
    "BinaryConv",
    "binary_convs",
    "unfused_binary_convs",
    "format_ops_table",
]

LCE_CUSTOM_OPS = ("LceQuantize", "LceDequantize", "LceBconv2d", "LceBMaxPool2d")
_TFLITE_INT8 = 9



def _sign_quantizers() -> tuple[set, set]:
    """(input, kernel) quantizer classes LCE fuses: the input ones' forward is larq.math.sign
    (sign(0) = +1); the kernel ones give +-1 or +-scale per output channel."""
    import larq as lq

    from ubnas_tf.quantizers import ApproxSign

    inputs = {lq.quantizers.SteSign, lq.quantizers.ApproxSign, lq.quantizers.SwishSign,
              ApproxSign}
    return inputs, inputs | {lq.quantizers.MagnitudeAwareSign}


def _schema():
    from larq_compute_engine.mlir.python import tflite_schema

    return tflite_schema


def _builtin_names() -> dict[int, str]:
    operators = _schema().BuiltinOperator
    return {value: name for name, value in vars(operators).items() if not name.startswith("_")}


def _model(tflite_bytes: bytes):
    schema = _schema()
    if len(tflite_bytes) < 8 or tflite_bytes[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    return schema.Model.GetRootAs(tflite_bytes, 0)


def _op_code_names(model) -> list[str]:
    builtin = _builtin_names()
    custom_code = _schema().BuiltinOperator.CUSTOM
    names = []
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index)
        # Schema >= 2.4: builtin_code holds every code, deprecated_builtin_code only those < 127.
        value = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if value == custom_code:
            names.append(code.CustomCode().decode("utf-8", errors="replace"))
        else:
            names.append(builtin.get(value, f"UNKNOWN_BUILTIN_{value}"))
    return names


def operators(tflite_bytes: bytes) -> list[dict]:
    """Every operator of every subgraph: `{"op", "inputs", "outputs"}` (tensor names)."""
    model = _model(tflite_bytes)
    names = _op_code_names(model)
    result = []
    for subgraph_index in range(model.SubgraphsLength()):
        graph = model.Subgraphs(subgraph_index)

        def tensor_names(indices):
            return [graph.Tensors(i).Name().decode("utf-8", "replace") for i in indices if i >= 0]

        for op_index in range(graph.OperatorsLength()):
            op = graph.Operators(op_index)
            result.append({
                "op": names[op.OpcodeIndex()],
                "inputs": tensor_names(op.InputsAsNumpy() if op.InputsLength() else []),
                "outputs": tensor_names(op.OutputsAsNumpy() if op.OutputsLength() else []),
            })
    return result


def op_counts(tflite_bytes: bytes) -> dict[str, int]:
    """Op name -> count over all subgraphs, most frequent first (custom ops by their name)."""
    counts = collections.Counter(op["op"] for op in operators(tflite_bytes))
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def unsupported_ops(counts: dict[str, int]) -> list[str]:
    """Ops of `counts` that LCE's runtime does not register (empty when all can run)."""
    builtin = set(_builtin_names().values()) - {"CUSTOM"}
    return sorted(name for name in counts if name not in builtin and name not in LCE_CUSTOM_OPS)


def io_types(tflite_bytes: bytes) -> dict[str, list[str]]:
    """Input and output tensor types of the main subgraph, e.g. {"inputs": ["FLOAT32"]}."""
    types = {value: name for name, value in vars(_schema().TensorType).items()
             if not name.startswith("_")}
    graph = _model(tflite_bytes).Subgraphs(0)
    return {
        "inputs": [types[graph.Tensors(graph.Inputs(i)).Type()]
                   for i in range(graph.InputsLength())],
        "outputs": [types[graph.Tensors(graph.Outputs(i)).Type()]
                    for i in range(graph.OutputsLength())],
    }


@dataclasses.dataclass
class BinaryConv:
    """A Keras layer whose inputs and weights are both binarized, and why LCE cannot fuse it
    (`reason` None: it should become an LceBconv2d)."""

    layer: str
    kind: str
    reason: str | None = None


def _quantizer_name(quantizer) -> str:
    return type(quantizer).__name__ if quantizer is not None else "None"


def _is_binary(quantizer) -> bool:
    import larq as lq

    return (getattr(quantizer, "precision", None) == 1
            and not isinstance(quantizer, lq.quantizers.NoOp))


def _walk(layer, prefix=""):
    """(path, layer) for `layer`'s sublayers, recursively, with Keras name-scope paths."""
    for child in layer._flatten_layers(include_self=False, recursive=False):  # noqa: SLF001
        path = f"{prefix}{child.name}"
        yield path, child
        yield from _walk(child, f"{path}/")


def _fusion_blocker(layer, target: str) -> str | None:
    import larq as lq

    kind = type(layer).__name__
    if isinstance(layer, (lq.layers.QuantDepthwiseConv2D, lq.layers.QuantSeparableConv2D)):
        return f"LCE does not binarize {kind}: use a 1x1 QuantConv2D"
    if isinstance(layer, lq.layers.QuantDense):
        return "LCE does not binarize QuantDense: use a 1x1 QuantConv2D"
    if not isinstance(layer, lq.layers.QuantConv2D):
        return f"LCE binarizes only 2D convolutions, not {kind}"
    input_signs, kernel_signs = _sign_quantizers()
    if type(layer.input_quantizer) not in input_signs:
        return (f"input quantizer {_quantizer_name(layer.input_quantizer)} is not a sign LCE "
                "recognises (its forward must be larq.math.sign, e.g. ste_sign or ApproxSign)")
    if type(layer.kernel_quantizer) not in kernel_signs:
        return (f"kernel quantizer {_quantizer_name(layer.kernel_quantizer)} is not +-scale per "
                "output channel (use ste_sign or magnitude_aware_sign)")
    groups = int(getattr(layer, "groups", 1) or 1)
    if groups > 1:
        per_group = int(layer.kernel.shape[2])
        if per_group % 32:
            return (f"groups={groups} with {per_group} input channels per group: LCE needs a "
                    "multiple of 32 per group")
    kernel_area = int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
    pad_values = float(getattr(layer, "pad_values", 0.0))
    if layer.padding == "same" and kernel_area > 1 and pad_values != 1.0 and target != "arm":
        return (f"zero 'same' padding fuses only on target arm (target is {target}): "
                "use pad_values=1.0 or padding='valid'")
    return None


def binary_convs(model, *, target: str = "arm") -> list[BinaryConv]:
    """The layers of `model` with binary input *and* binary weights, each with its blocker."""
    import larq as lq

    found = []
    for path, layer in _walk(model):
        if not isinstance(layer, lq.layers_base.BaseLayer):
            continue
        weight_quantizer = (getattr(layer, "kernel_quantizer", None)
                            or getattr(layer, "pointwise_quantizer", None)
                            or getattr(layer, "depthwise_quantizer", None))
        if _is_binary(layer.input_quantizer) and _is_binary(weight_quantizer):
            found.append(BinaryConv(path, type(layer).__name__, _fusion_blocker(layer, target)))
    return found


def _names_bconv(path: str, ops: list[dict], model_name: str) -> bool:
    """Whether some LceBconv2d carries the layer's (or its parent module's) name scope."""
    scopes = {f"{model_name}/{path}/"}
    if "/" in path:
        scopes.add(f"{model_name}/{path.rsplit('/', 1)[0]}/")
    for op in ops:
        if op["op"] != "LceBconv2d":
            continue
        if any(scope in name for name in op["inputs"] + op["outputs"] for scope in scopes):
            return True
    return False


def unfused_binary_convs(model, tflite_bytes: bytes, *, target: str = "arm") -> list[dict]:
    """Binary convs of `model` that did not become an LceBconv2d, each `{layer, kind, reason}`.

    The number of unfused convs is exact (binary layers minus LceBconv2d ops). Which layers
    they are comes from the fusion rules above, and otherwise from the name scopes that the
    converter leaves on tensor names.
    """
    convs = binary_convs(model, target=target)
    ops = operators(tflite_bytes)
    fused = sum(op["op"] == "LceBconv2d" for op in ops)
    missing = len(convs) - fused
    if missing <= 0:
        return []
    blocked = [conv for conv in convs if conv.reason]
    if len(blocked) != missing:
        unexplained = [conv for conv in convs if not conv.reason
                       and not _names_bconv(conv.layer, ops, model.name)]
        for conv in unexplained:
            conv.reason = ("not fused for a reason the rules here do not know (no LceBconv2d "
                           "carries its name): check its quantizers and the ops around it")
        blocked = [conv for conv in convs if conv.reason]
        if len(blocked) < missing:
            blocked.append(BinaryConv(
                "?", "?", f"{missing - len(blocked)} more binary conv(s) not fused; which ones "
                "could not be told from the tensor names"))
    return [dataclasses.asdict(conv) for conv in blocked]


def format_ops_table(counts: dict[str, int], float_counts: dict[str, int] | None = None) -> str:
    """A plain-text table: op, count (and the float model's count when given). LCE's four ops
    and float CONV_2D come first, listed even when absent; then every other op."""
    headline = list(LCE_CUSTOM_OPS) + ["CONV_2D"]
    others = [name for name in list(counts) + list(float_counts or {}) if name not in headline]
    names = headline + list(dict.fromkeys(others))
    width = max(len(name) for name in names)
    header = f"{'op':<{width}}  {'count':>5}" + ("  float" if float_counts is not None else "")
    lines = [header, "-" * len(header)]
    for name in names:
        line = f"{name:<{width}}  {counts.get(name, 0):>5}"
        if float_counts is not None:
            line += f"  {float_counts.get(name, 0):>5}"
        lines.append(line)
    return "\n".join(lines)
