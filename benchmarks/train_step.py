"""Speed and memory of one retraining step, beside the quantizer-free twin and the FLOP limit.

    python benchmarks/train_step.py              # every network, binary and float: a table
    python benchmarks/train_step.py --quick          # fewer steps, the small networks only
    python benchmarks/train_step.py --ab jit_compile # A/B inside one process, interleaved

Networks (issue 15):
  searched-fashion   the searched Fashion-MNIST network (configs/genotypes/UBNAS_FASHION_MNIST.json,
                     the cells of docs/results/fashion_mnist: its counts match results.json) at
                     configs/train_fashion_mnist.yaml's size: C=8, 4 cells, 28x28x1, batch 128
  bireal-fashion, quicknet-fashion   the baselines of that same config
  searched-cifar10   EBNAS's CIFAR-10 size (configs/train.yaml): 11 cells, C=56, 32x32x3, the
                     auxiliary head and drop-path on, batch 256 (the same genotype)
  bireal-cifar10, quicknet-cifar10   configs/train.yaml's Bi-Real-18 and QuickNet layouts

Each network runs twice, each time in a fresh process (its own peak RSS and time to first
step): `binary` as trained, and `float`, the same topology with every quantizer removed (the
latent weights and real activations go straight into the convolutions): the difference is what
simulating 1-bit arithmetic in float costs in training.

The step is the one `tools/train.py` runs: `ubnas_tf.train.Trainer` compiled with the config's
optimizer (--jit: XLA-compiled, which tools/train.py does not do), called through
`train_on_batch` on random images. Reported: time to first step (from process start: imports,
building, tracing, the first step), median seconds per step after 2 warm-up steps, images/s,
peak RSS (getrusage), the step's FLOPs (ubnas_tf.network.cost's binary + float MACs x 2 FLOPs
x 3 for forward + backward, per image x batch; binary convolutions are float convolutions in
training) and the achieved GFLOP/s beside the machine's peak (the best of a large float32
matmul and a large 3x3 conv, measured by this script in a process of its own): the table's
`limit images/s` is what the step's FLOPs allow at that peak.

--ab OPTION compares a speed option inside one process: two trainers of the same network and
weights, their steps interleaved, medians of each, and the largest difference of their losses
and weights after the same steps (so that a speed-up is seen not to change results). Timings
on a shared machine are noisy: compare within one run, interleaved, as this does.
"""
import argparse
import json
import os
import pathlib
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from child_process import emit, run_child  # noqa: E402

STARTED = time.perf_counter()
ROOT = pathlib.Path(__file__).resolve().parent.parent
GENOTYPE = ROOT / "configs" / "genotypes" / "UBNAS_FASHION_MNIST.json"
FASHION = dict(config="configs/train_fashion_mnist.yaml", input_shape=(28, 28, 1))
CIFAR10 = dict(config=None, input_shape=(32, 32, 3))  # configs/train.yaml: EBNAS's CIFAR-10
NETWORKS = {
    "searched-fashion": dict(FASHION, model=None),
    "bireal-fashion": dict(FASHION, model="bireal"),
    "quicknet-fashion": dict(FASHION, model="quicknet"),
    "searched-cifar10": dict(CIFAR10, model=None),
    "bireal-cifar10": dict(CIFAR10, model="bireal"),
    "quicknet-cifar10": dict(CIFAR10, model="quicknet"),
}
QUICK = ("searched-fashion", "bireal-fashion", "quicknet-fashion")
AB_OPTIONS = ("jit_compile", "direct_dilation")


# --- building a network and its training step ------------------------------------------------

def _config(name: str, args) -> dict:
    from ubnas_tf import config as config_lib

    spec = NETWORKS[name]
    files = [str(ROOT / spec["config"])] if spec["config"] else []
    overrides = list(args.set or [])
    if args.batch:
        overrides.append(f"batch_size={args.batch}")
    if args.tiny:  # for the test: the same code on the smallest networks
        overrides += ["cells=5", "channels=4", "baselines.bireal.width=4",
                      "baselines.bireal.blocks=[1,1]", "baselines.quicknet.filters=[4,8]",
                      "baselines.quicknet.blocks=[1,1]"]
    return config_lib.load("train", files=files, overrides=overrides)


def remove_quantizers(model) -> int:
    """Strip every larq quantizer from `model` in place (input quantizers and the quantized
    views of the kernels): the same topology computing in float. Returns how many layers."""
    import larq as lq

    count = 0
    stack = [model]
    while stack:
        layer = stack.pop()
        stack.extend(getattr(layer, "_self_tracked_trackables", ()))
        if isinstance(layer, lq.layers_base.BaseLayer):
            layer.input_quantizer = None
            for variable in layer.weights:
                if hasattr(variable, "quantizer"):
                    variable.quantizer = None
            count += 1
    return count


def keras_dilation(model) -> int:
    """Make `model`'s dilated convolutions run Keras's way (SpaceToBatchND around the conv)
    instead of `ubnas_tf.search_space.layers`'s direct one: the A side of --ab direct_dilation.
    Returns how many convolutions."""
    import functools

    import tensorflow as tf

    from ubnas_tf.search_space import layers

    count = 0
    stack = [model]
    while stack:
        layer = stack.pop()
        stack.extend(getattr(layer, "_self_tracked_trackables", ()))
        if isinstance(layer, layers.QuantConv2D | layers.Conv2D) and max(layer.dilation_rate) > 1:
            layer.convolution_op = functools.partial(tf.keras.layers.Conv2D.convolution_op, layer)
            count += 1
    return count


def build_trainer(name: str, args, *, variant: str, jit_compile, keras_dilated=False):
    """The network, its Trainer compiled as tools/train.py compiles it, and the batch size."""
    import types

    from ubnas_tf.network import baselines
    from ubnas_tf.network.genotype_network import build_from_config
    from ubnas_tf.search_space.genotype import Genotype
    from ubnas_tf.train import Trainer, make_optimizer

    spec = NETWORKS[name]
    config = _config(name, args)
    info = types.SimpleNamespace(input_shape=spec["input_shape"], num_classes=10,
                                 name=name, train_size=60000)
    if spec["model"]:
        network = baselines.build_baseline(spec["model"], info, config)
    else:
        network = build_from_config(Genotype.load(GENOTYPE), info, config)
    if variant == "float" and not remove_quantizers(network):
        raise SystemExit(f"{name}: no quantized layer found")
    if keras_dilated and not keras_dilation(network):
        raise SystemExit(f"{name}: no dilated convolution")
    auxiliary = config.get("auxiliary") or {}
    trainer = Trainer(network, num_classes=10, label_smoothing=config.get("label_smoothing", 0),
                      aux_weight=auxiliary.get("weight", 0.0) if auxiliary.get("enabled") else 0)
    optimizer = make_optimizer(config["optimizer"], total_steps=1000)
    # tools/train.py compiles without XLA (measured 9x slower here: README, performance).
    trainer.compile(optimizer=optimizer, jit_compile=jit_compile)
    return network, trainer, int(config["batch_size"]), jit_compile


def _batch(spec, batch, seed):
    import tensorflow as tf

    images = tf.random.stateless_normal((batch, *spec["input_shape"]), [seed, 1])
    labels = tf.random.stateless_uniform([batch], [seed, 2], maxval=10, dtype=tf.int32)
    return images, labels


def step_flops(network, batch: int) -> float:
    """FLOPs of one training step: (binary + float) MACs x 2 x 3 (forward, and the backward
    pass's two products per forward one) per image, times the batch."""
    from ubnas_tf.network.cost import profile

    cost = profile(network)
    return float(cost.macs_binary + cost.macs_float) * 2 * 3 * batch


# --- measurements (each in a child process) --------------------------------------------------

def _import():
    sys.path.insert(0, str(ROOT))
    import ubnas_tf  # noqa: F401  (Keras 2 before TensorFlow)
    import tensorflow as tf

    return tf


def measure_step(name: str, variant: str, args) -> dict:
    tf = _import()
    import numpy as np

    tf.keras.utils.set_random_seed(0)
    imported = time.perf_counter()
    import_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    network, trainer, batch, jit = build_trainer(name, args, variant=variant,
                                                  jit_compile=args.jit)
    batches = [_batch(NETWORKS[name], batch, seed) for seed in range(2)]
    built = time.perf_counter()
    trainer.train_on_batch(*batches[0])
    first = time.perf_counter()
    times = []
    for index in range(2 + args.steps):
        start = time.perf_counter()
        trainer.train_on_batch(*batches[index % 2])
        if index >= 2:
            times.append(time.perf_counter() - start)
    median = float(np.median(times))
    flops = step_flops(network, batch)
    return {
        "network": name, "variant": variant, "batch": batch, "jit_compile": jit,
        "import_s": round(imported - STARTED, 2), "build_s": round(built - imported, 2),
        "time_to_first_step_s": round(first - STARTED, 2),
        "median_s": round(median, 4), "min_s": round(min(times), 4),
        "max_s": round(max(times), 4), "images_per_s": round(batch / median, 1),
        "step_gflop": round(flops / 1e9, 3), "gflop_per_s": round(flops / median / 1e9, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "import_rss_gib": round(import_rss, 3),
        "load_average": round(os.getloadavg()[0], 2),
    }


def measure_peak(args) -> dict:
    """The machine's float32 peak as TensorFlow reaches it: the best GFLOP/s of a large matmul
    and of a large 3x3 convolution (oneDNN on CPUs, cuBLAS/cuDNN on GPUs)."""
    tf = _import()
    import numpy as np

    n = 512 if args.tiny else 2048
    a = tf.random.normal((n, n))
    matmul = tf.function(lambda x: tf.matmul(x, x))
    shape, filters = ((8, 16, 16, 32), 32) if args.tiny else ((64, 32, 32, 128), 128)
    images = tf.random.normal(shape)
    kernel = tf.random.normal((3, 3, shape[-1], filters))
    conv = tf.function(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"))

    def best(fn, flops, repeats):
        fn().numpy()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn().numpy()
            times.append(time.perf_counter() - start)
        return flops / float(np.min(times)) / 1e9

    repeats = 3 if args.tiny else 10
    matmul_gflops = best(lambda: matmul(a), 2.0 * n ** 3, repeats)
    conv_flops = 2.0 * np.prod(shape[:3]) * 9 * shape[-1] * filters
    conv_gflops = best(lambda: conv(images, kernel), conv_flops, repeats)
    return {"matmul_gflop_per_s": round(matmul_gflops, 1),
            "conv_gflop_per_s": round(conv_gflops, 1),
            "peak_gflop_per_s": round(max(matmul_gflops, conv_gflops), 1),
            "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU"}


def _max_difference(first, second) -> float:
    import numpy as np

    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) if np.size(a) else 0.0
               for a, b in zip(first, second))


def measure_ab(name: str, option: str, args) -> dict:
    """Two trainers of one network with the same weights, option off (A) and on (B), steps
    interleaved; medians, and how far their losses and weights drift apart."""
    tf = _import()
    import numpy as np

    settings = {"jit_compile": [dict(jit_compile=False), dict(jit_compile=True)],
                "direct_dilation": [dict(jit_compile=False, keras_dilated=True),
                                    dict(jit_compile=False)]}
    if option not in settings:
        raise SystemExit(f"--ab {option}: use one of {sorted(settings)}")
    trainers = []
    for setting in settings[option]:
        tf.keras.utils.set_random_seed(0)  # the same initial weights for both
        trainers.append(build_trainer(name, args, variant="binary", **setting))
    (net_a, trainer_a, batch, _), (net_b, trainer_b, _, _) = trainers
    net_b.set_weights(net_a.get_weights())
    batches = [_batch(NETWORKS[name], batch, seed) for seed in range(4)]
    times = {"A": [], "B": []}
    losses = {"A": [], "B": []}
    first = {}
    for index in range(2 + args.steps):
        order = (("A", trainer_a), ("B", trainer_b))
        for label, trainer in order if index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            result = trainer.train_on_batch(*batches[index % 4], reset_metrics=True,
                                            return_dict=True)
            elapsed = time.perf_counter() - start
            if index == 0:
                first[label] = elapsed
            losses[label].append(float(result["loss"]))
            if index >= 2:
                times[label].append(elapsed)
    median = {label: float(np.median(values)) for label, values in times.items()}
    return {
        "network": name, "option": option, "batch": batch, "steps": args.steps,
        "A": settings[option][0], "B": settings[option][1],
        "median_s": {k: round(v, 4) for k, v in median.items()},
        "first_step_s": {k: round(v, 2) for k, v in first.items()},
        "speedup": round(median["A"] / median["B"], 2),
        "losses": losses,
        "max_loss_difference": max(abs(a - b) for a, b in zip(losses["A"], losses["B"])),
        "max_weight_difference": _max_difference(net_a.get_weights(), net_b.get_weights()),
        "load_average": round(os.getloadavg()[0], 2),
    }


# --- driver ----------------------------------------------------------------------------------

def _child(args, *extra) -> dict:
    argv = [sys.executable, os.path.abspath(__file__), "--_child", *extra,
            f"--steps={args.steps}"]
    argv += [f"--batch={args.batch}"] if args.batch else []
    argv += ["--tiny"] if args.tiny else []
    argv += ["--jit"] if args.jit else []
    for item in args.set or []:
        argv += ["--set", item]
    return run_child(argv, " ".join(extra))


def table(results: dict) -> str:
    peak = results["peak"]["peak_gflop_per_s"]
    lines = [f"Machine peak (float32, best of matmul {results['peak']['matmul_gflop_per_s']} and "
             f"3x3 conv {results['peak']['conv_gflop_per_s']} GFLOP/s): {peak} GFLOP/s "
             f"({results['peak']['device']})", "",
             "| network | variant | batch | time to first step | s / step | images/s | "
             "GFLOP/step | GFLOP/s (% of peak) | limit images/s | peak RSS |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["steps"]:
        limit = peak * 1e9 / (row["step_gflop"] * 1e9 / row["batch"])
        lines.append(
            f"| {row['network']} | {row['variant']} | {row['batch']} | "
            f"{row['time_to_first_step_s']} s | {row['median_s']} | {row['images_per_s']} | "
            f"{row['step_gflop']} | {row['gflop_per_s']} ({100 * row['gflop_per_s'] / peak:.0f}%)"
            f" | {limit:.0f} | {row['peak_rss_gib']} GiB |")
    for ab in results.get("ab", []):
        lines.append(f"\nA/B {ab['option']} on {ab['network']} (batch {ab['batch']}, "
                     f"{ab['steps']} interleaved steps): {ab['median_s']['A']} s -> "
                     f"{ab['median_s']['B']} s ({ab['speedup']}x); first step "
                     f"{ab['first_step_s']['A']} s -> {ab['first_step_s']['B']} s; losses differ "
                     f"by at most {ab['max_loss_difference']:.2e}, weights by "
                     f"{ab['max_weight_difference']:.2e}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", choices=sorted(NETWORKS),
                        help="default: all (with --quick: the Fashion-MNIST-sized ones)")
    parser.add_argument("--variants", nargs="+", choices=["binary", "float"],
                        default=["binary", "float"])
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps after 2 warm-up ones (default 10; --quick 3)")
    parser.add_argument("--batch", type=int, default=0, help="override the config's batch")
    parser.add_argument("--jit", action="store_true",
                        help="XLA-compile the step (tools/train.py does not)")
    parser.add_argument("--set", action="append", help="a train config override key=value")
    parser.add_argument("--ab", choices=AB_OPTIONS, action="append",
                        help="also A/B this option inside one process, interleaved")
    parser.add_argument("--quick", action="store_true", help="small networks, 3 steps")
    parser.add_argument("--tiny", action="store_true", help="tiny networks (for the tests)")
    parser.add_argument("--json", metavar="PATH", help="write the results here as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the table here")
    parser.add_argument("--_child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 3 if args.quick or args.tiny else 10
    if args._child:
        kind, *rest = args._child
        result = {"peak": lambda: measure_peak(args),
                  "step": lambda: measure_step(rest[0], rest[1], args),
                  "ab": lambda: measure_ab(rest[0], rest[1], args)}[kind]()
        emit(result)
        return
    names = args.networks or list(QUICK if args.quick else NETWORKS)
    results = {"peak": _child(args, "peak"), "steps": [], "ab": []}
    for name in names:
        for variant in args.variants:
            results["steps"].append(_child(args, "step", name, variant))
            print(json.dumps(results["steps"][-1]), flush=True)
        for option in args.ab or []:
            results["ab"].append(_child(args, "ab", name, option))
            print(json.dumps(results["ab"][-1]), flush=True)
    text = table(results)
    print(text)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    if args.markdown:
        pathlib.Path(args.markdown).write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
