"""Speed and memory of one search iteration (architecture step + weight step).

    python benchmarks/search_step.py                 # both configs x low_memory off/on,
                                                     # each in a fresh process
    python benchmarks/search_step.py --config b --iterations 10 --grappler off

Configs (issue 4; PC-DARTS's figures for them are in shared/reference/PEER_BENCH.md):
  (a) EBNAS's search supernet: C=16, 8 cells, batch 64, 32x32x3, 10 classes
  (b) C=8, 5 cells, batch 32, 28x28x1, 10 classes
Both: the binary search space (7 ops), 4 nodes, multiplier 4, K=8 normal / K=4 reduction,
sigmoid edge weights with both regularizers, first-order architecture step, weights Adam with
weight decay and grad clip 5. Random inputs, as the peer figures. Each config runs with the
search's default (`low_memory: false`) and with `low_memory: true` (cell activations recomputed
in the backward pass, one malloc arena: less memory, slower steps), as --low_memory chooses.

Printed per config: time to first step (building the variables, tracing both steps and their
first run), median seconds per iteration after 2 warm-up iterations (and min-max), images/s
(one batch per iteration, as the peers count), the process's CPU seconds per iteration (wall
time on a shared machine depends on the other processes: the load average is printed too),
peak RSS (getrusage), graph nodes of each step.

oneDNN's kernels are on by default (TF_ENABLE_ONEDNN_OPTS=1, as tools/search.py sets them);
--onednn off measures TensorFlow's Eigen kernels.
"""
import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from child_process import emit, run_child  # noqa: E402

CONFIGS = {
    "a": dict(channels=16, cells=8, batch=64, input_shape=(32, 32, 3)),
    "b": dict(channels=8, cells=5, batch=32, input_shape=(28, 28, 1)),
}
PEERS = {  # PC-DARTS PyTorch on this kind of machine (PEER_BENCH.md)
    "a": dict(seconds=11.95, images=5.36, rss_gib=3.8),
    "b": dict(seconds=2.35, images=13.6, rss_gib=0.76),
}


def measure(name: str, args) -> dict:
    started = time.perf_counter()
    # Must be set before TensorFlow loads; tools/search.py does the same.
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if args.onednn == "on" else "0"
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import ubnas_tf  # noqa: F401  (Keras 2 before TensorFlow)
    from ubnas_tf.search.runtime_memory import limit_malloc_arenas
    import numpy as np
    import tensorflow as tf

    import types

    from ubnas_tf import config as config_lib
    from ubnas_tf.search.run import build_search_steps

    if args.grappler == "off":
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    elif args.grappler != "on":  # a comma-separated list of passes to turn off
        tf.config.optimizer.set_experimental_options(
            {name: False for name in args.grappler.split(",")})
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    setup = dict(CONFIGS[name], batch=args.batch or CONFIGS[name]["batch"])
    imported = time.perf_counter()
    import_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    # The search config's defaults (EBNAS's: sigmoid edge weights, both regularizers, Adam
    # with weight decay and grad clip 5) at the config's sizes, built as tools/search.py does.
    config = config_lib.load("search", overrides=[
        f"channels={setup['channels']}", f"cells={setup['cells']}", f"order={args.order}",
        f"supernet_graph={args.graph}", f"xla={str(args.xla).lower()}",
        f"low_memory={'true' if args.low_memory == 'on' else 'false'}"])
    info = types.SimpleNamespace(input_shape=setup["input_shape"], num_classes=10)
    if config["low_memory"]:
        limit_malloc_arenas()  # where run_search does it
    steps = build_search_steps(config, info)
    supernet = steps.supernet
    batch = setup["batch"]
    shape = (batch, *setup["input_shape"])
    images = [tf.random.stateless_normal(shape, [i, 1]) for i in range(2)]
    labels = [tf.random.stateless_uniform([batch], [i, 2], maxval=10, dtype=tf.int32)
              for i in range(2)]
    ramp = tf.constant(0.5)

    def iteration():
        arch_loss, _ = steps.arch_step(images[1], labels[1], images[0], labels[0], ramp)
        loss, _ = steps.weight_step(images[0], labels[0])
        return float(arch_loss), float(loss)

    built = time.perf_counter()
    losses = iteration()
    first = time.perf_counter()
    times, cpu_times = [], []
    for index in range(2 + args.iterations):
        start, cpu_start = time.perf_counter(), time.process_time()
        losses = iteration()
        if index >= 2:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    weight_times = []
    for _ in range(args.iterations if args.weight_alone else 0):
        start = time.perf_counter()
        float(steps.weight_step(images[0], labels[0])[0])
        weight_times.append(time.perf_counter() - start)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    nodes = steps.graph_nodes(images[0], labels[0])
    median = float(np.median(times))
    return {
        "config": name,
        "batch": batch,
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "import_s": round(imported - started, 2),
        "build_s": round(built - imported, 2),
        "first_step_s": round(first - built, 2),
        "time_to_first_step_s": round(first - imported, 2),
        "median_s": round(median, 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "images_per_s": round(batch / median, 1),
        # CPU seconds of this process (all threads) per iteration: less sensitive than wall
        # time to other processes sharing the cores.
        "cpu_s": round(float(np.median(cpu_times)), 3),
        "load_average": round(os.getloadavg()[0], 2),
        "weight_step_alone_s": round(float(np.median(weight_times)), 3) if weight_times else None,
        "peak_rss_gib": round(peak_rss, 3),
        # What importing TensorFlow + tf-keras + larq + ubnas_tf costs before any supernet.
        "import_rss_gib": round(import_rss, 3),
        "graph_nodes": nodes,
        "traces": dict(steps.traces),
        "variables": len(supernet.trainable_variables),
        "parameters": int(sum(np.prod(v.shape) for v in supernet.trainable_variables)),
        "losses": [round(v, 4) for v in losses],
        "options": {"grappler": args.grappler, "xla": args.xla, "graph": args.graph,
                    "order": args.order, "threads": args.threads,
                    "onednn": args.onednn, "deterministic": args.deterministic,
                    "low_memory": args.low_memory},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["a", "b", "both"], default="both")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--batch", type=int, default=0,
                        help="override the config's batch (EBNAS searches (a) at 256)")
    parser.add_argument("--grappler", default="on",
                        help="on, off, or a comma-separated list of Grappler passes to turn "
                        "off (e.g. memory_optimization,arithmetic_optimization)")
    parser.add_argument("--xla", action="store_true", help="jit_compile both steps")
    parser.add_argument("--graph", choices=["shared", "inlined", "flat"], default="shared",
                        help="supernet_graph: how the step graphs hold the edges")
    parser.add_argument("--order", choices=["first", "second"], default="first")
    parser.add_argument("--onednn", choices=["on", "off"], default="on",
                        help="TF_ENABLE_ONEDNN_OPTS (oneDNN conv/BN kernels)")
    parser.add_argument("--low_memory", choices=["off", "on", "both"], default="both",
                        help="the search's low_memory: false (off), true (on), or each in turn")
    parser.add_argument("--threads", type=int, default=0, help="intra/inter-op threads (0: TF)")
    parser.add_argument("--deterministic", action="store_true",
                        help="tf.config.experimental.enable_op_determinism (as the search)")
    parser.add_argument("--weight_alone", action="store_true",
                        help="also time the weight step alone")
    parser.add_argument("--json", action="store_true", help="print one JSON line per run")
    parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        emit(measure(args.config, args))
        return
    names = ["a", "b"] if args.config == "both" else [args.config]
    modes = ["off", "on"] if args.low_memory == "both" else [args.low_memory]
    for name in names:
        for mode in modes:
            report(name, mode, args)


def report(name: str, low_memory: str, args) -> None:
    """Measure one config in a fresh process (its own peak RSS and time to first step)."""
    argv = [f"--iterations={args.iterations}", f"--batch={args.batch}",
            f"--grappler={args.grappler}",
            f"--graph={args.graph}", f"--order={args.order}", f"--threads={args.threads}",
            f"--onednn={args.onednn}", f"--low_memory={low_memory}"]
    argv += [flag for flag, on in (("--xla", args.xla),
                                   ("--weight_alone", args.weight_alone),
                                   ("--deterministic", args.deterministic)) if on]
    command = [sys.executable, os.path.abspath(__file__), "--config", name, "--_child", *argv]
    result = run_child(command, f"config {name}")
    if args.json:
        print(json.dumps(result), flush=True)
        return
    peer = PEERS[name]
    print(f"config ({name}): C={CONFIGS[name]['channels']}, {CONFIGS[name]['cells']} cells, "
          f"batch {result['batch']}, input {CONFIGS[name]['input_shape']}, "
          f"low_memory {low_memory}")
    print(f"  time to first step {result['time_to_first_step_s']:7.1f} s  (build "
          f"{result['build_s']} s, trace + first run {result['first_step_s']} s)")
    print(f"  s / iteration      {result['median_s']:7.3f}    (min {result['min_s']}, max "
          f"{result['max_s']}; PC-DARTS {peer['seconds']})")
    print(f"  images / s         {result['images_per_s']:7.1f}    (PC-DARTS {peer['images']})")
    print(f"  CPU s / iteration  {result['cpu_s']:7.3f}    (all threads; 1-min load average "
          f"{result['load_average']} at the end)")
    print(f"  peak RSS           {result['peak_rss_gib']:7.2f} GiB (PC-DARTS "
          f"{peer['rss_gib']} GiB; {result['import_rss_gib']:.2f} GiB of it after the "
          "imports alone)")
    if result["weight_step_alone_s"]:
        print(f"  weight step alone  {result['weight_step_alone_s']:7.3f} s")
    print(f"  graph nodes {result['graph_nodes']}, traces {result['traces']}, "
          f"{result['variables']} variables, {result['parameters']} weights")
    print(f"  options {result['options']}", flush=True)


if __name__ == "__main__":
    main()
