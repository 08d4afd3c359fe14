#!/usr/bin/env bash
# GPU check of issue 15, in one command of about 5-8 minutes on one GPU (prepared on a 2-core
# CPU with no GPU at hand: not yet run on one).
#
#   OUT=/some/folder bash benchmarks/gpu_check.sh      # PYTHON=... to choose the interpreter
#
# Needs a Python with this package's pins (tensorflow 2.16.2 with its CUDA 12 libraries, i.e.
# `pip install tensorflow[and-cuda]==2.16.2`, tf-keras, larq 0.14) and installs nothing.
# Writes into $OUT: peak.json, search_a256.json (the search of EBNAS's config (a) at batch 256,
# iteration = architecture + weight step), train_cifar10.json/.md (the retraining step of the
# CIFAR-10 network, 11 cells C=56, binary and quantizer-free), gpu_days.json; and prints what a
# 50-epoch CIFAR-10 search costs in GPU-days beside PC-DARTS (0.1) and EBNAS (0.04).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:?set OUT to the folder for the results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

"$PYTHON" - <<'PY'
import ubnas_tf  # noqa: F401
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
print("TensorFlow", tf.__version__, "GPUs:", gpus, "built with CUDA:", tf.test.is_built_with_cuda())
if not gpus:
    raise SystemExit("no GPU visible to TensorFlow: nothing to check (install tensorflow[and-cuda])")
PY

# 1. the search, config (a) at EBNAS's batch 256, as tools/search.py runs it (deterministic
#    ops, the default low_memory: false); weight step alone too (the warm-up epochs).
timeout 270 "$PYTHON" benchmarks/search_step.py --config a --batch 256 --iterations 10 \
  --low_memory off --deterministic --weight_alone --json | tee "$OUT/search_a256.jsonl"

# 2. GPU-days of a 50-epoch CIFAR-10 search (EBNAS: 25,000 + 25,000 images, batch 256, 25
#    warm-up epochs of weight steps only, then 25 of architecture + weight steps).
"$PYTHON" - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
search = json.loads((out / "search_a256.jsonl").read_text().splitlines()[-1])
iterations = 25000 // 256  # the search drops incomplete batches
warmup = 25 * iterations * search["weight_step_alone_s"]
searching = 25 * iterations * search["median_s"]
days = (warmup + searching + search["time_to_first_step_s"]) / 86400
result = {"iterations_per_epoch": iterations, "s_per_iteration": search["median_s"],
          "weight_step_s": search["weight_step_alone_s"], "gpu_days_50_epochs": round(days, 4),
          "peers_gpu_days": {"PC-DARTS": 0.1, "EBNAS": 0.04}, "goal": 0.02}
(out / "gpu_days.json").write_text(json.dumps(result, indent=1))
print(f"50-epoch CIFAR-10 search: {days:.4f} GPU-days ({search['median_s']} s / iteration, "
      f"{search['weight_step_alone_s']} s / weight step, {iterations} iterations an epoch); "
      f"PC-DARTS 0.1, EBNAS 0.04, goal <= 0.02")
PY

# 3. the retraining step of the CIFAR-10 network (train.yaml: batch 256), binary and
#    quantizer-free, each in a fresh process (their traces take most of the time).
timeout 300 "$PYTHON" benchmarks/train_step.py --networks searched-cifar10 --steps 10 \
  --json "$OUT/train_cifar10.json" --markdown "$OUT/train_cifar10.md"
