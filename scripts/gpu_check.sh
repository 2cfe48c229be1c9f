#!/usr/bin/env bash
# The GPU check: crlbench's GPU figures and GPU paths, measured in one call on a GPU machine
# that has python3 with torch, torchvision, timm, pandas, scikit-learn, scipy, matplotlib, rich,
# jinja2, pyyaml, pytest and hypothesis, and no network, no Ray and no omegaconf.
#
#   scripts/gpu_check.sh prepare   here, with network to PyPI: fill .gpu/ (git-ignored) with
#                                  the wheels that machine lacks and Fashion-MNIST's four files
#   scripts/gpu_check.sh device    there, from the repository root, with .gpu/ carried along:
#                                  install from .gpu/, then the steps below; results under $OUT
#
# What travels in .gpu/ (about 31 MB):
#   wheels/crlbench-*.whl     this checkout, built here (pip wheel --no-deps); COMMIT, the
#                             commit it was built from (records carry it as git_commit)
#   wheels/omegaconf-*.whl    the version installed here (2.4 vendors its antlr4 runtime; an
#                             older one would need antlr4-python3-runtime too, built here)
#   data/fashion-mnist/*.gz   train/t10k images and labels (Debian's dataset-fashion-mnist),
#                             read through data.root=.gpu/data
#
# The device steps, each under its own time limit, so that one slow step still leaves the
# others' results (GPU_CHECK_STEPS chooses among them):
#   env     the versions and the GPU; crlbench's import must not pull Ray in      -> env.json
#   bench   crlbench bench with its H100/H200 defaults, DataLoader at 8 and 16
#           workers                                                    -> bench.json, bench.log
#   smoke   suite=gpu_smoke (14 methods, 1 epoch on Fashion-MNIST, bf16, channels_last,
#           compile) in GPU_CHECK_PROCS processes sharing one store, and CMC on digits_rgb
#           beside them; every run must end ok with finite metrics
#                                            -> smoke.json, smoke.log, smoke-records.tar.gz
#   tests   pytest -m gpu (the tests that need CUDA)                             -> tests.log
# The exit code is that of the first step that failed (0 when all passed).
#
# Knobs (environment): OUT (default ./gpu-out), PYTHON (python3), GPU_CHECK_DIR (.gpu),
# GPU_CHECK_OFFLINE (1: prepare downloads nothing), FASHION_DIR (where prepare copies the data
# from; default Debian's /usr/share/datasets/fashion-mnist), GPU_CHECK_DEVICE (cuda),
# GPU_CHECK_STEPS ("env bench smoke tests"), GPU_CHECK_INSTALL (1: pip install .gpu/wheels
# into /tmp/crlbench-site first), GPU_CHECK_PROCS (4), GPU_CHECK_BENCH_S (150),
# GPU_CHECK_SMOKE_S (170), GPU_CHECK_TESTS_S (60), GPU_CHECK_TINY (1: CPU-test sizes; the
# test suite runs this script so, with Ray hidden).
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
GPU=${GPU_CHECK_DIR:-.gpu}  # what travels (relative to the repository root)
OUT=${OUT:-gpu-out}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
STEPS=${GPU_CHECK_STEPS:-env bench smoke tests}
PROCS=${GPU_CHECK_PROCS:-4}
TINY=${GPU_CHECK_TINY:-0}
FASHION_FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte
t10k-labels-idx1-ubyte"

prepare() {
    set -e
    rm -rf "$GPU"
    mkdir -p "$GPU/wheels" "$GPU/data/fashion-mnist"
    "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$GPU/wheels" .
    # the wheel is no git checkout: its commit travels beside it, for the records
    local dirty=""
    [ -z "$(git status --porcelain)" ] || dirty="+dirty"
    echo "$(git rev-parse HEAD)$dirty" >"$GPU/COMMIT"
    local omegaconf
    omegaconf=$("$PYTHON" -m pip freeze | grep -i '^omegaconf==')
    if [ "${GPU_CHECK_OFFLINE:-0}" != 1 ]; then
        "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$GPU/wheels" \
            "$omegaconf"
    fi
    local src=${FASHION_DIR:-/usr/share/datasets/fashion-mnist}
    for f in $FASHION_FILES; do
        cp "$src/$f.gz" "$GPU/data/fashion-mnist/"
    done
    du -sh "$GPU"
    ls "$GPU/wheels"
}

# the device part ------------------------------------------------------------------------

crl() { "$PYTHON" -m crlbench "$@"; }

step_env() {
    "$PYTHON" - "$OUT/env.json" <<'EOF'
import json, os, platform, sys
import torch
import crlbench.cli  # noqa: F401  (the whole command: it must not import Ray)
from crlbench.runner import environment
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
env = environment(device)
env.update(ray_imported="ray" in sys.modules, cpu_count=os.cpu_count(),
           crlbench_file=crlbench.cli.__file__, machine=platform.machine())
json.dump(env, open(sys.argv[1], "w"), indent=2)
print(json.dumps(env))
sys.exit(1 if env["ray_imported"] else 0)
EOF
}

step_bench() {
    local args=(workers=[8,16] "output=$OUT/bench.json" "device=$DEVICE")
    if [ "$TINY" = 1 ]; then
        args=(backbone=convnet_tiny batch_size=16 image_size=16 steps=2 warmup=1 workers=[0]
              eval_sizes=[300] pool_batches=2 profile_steps=2 compile=false
              "output=$OUT/bench.json" "device=$DEVICE")
    fi
    timeout "${GPU_CHECK_BENCH_S:-150}" "$PYTHON" -m crlbench bench "${args[@]}" \
        >"$OUT/bench.log" 2>&1
    local rc=$?
    tail -n 40 "$OUT/bench.log"
    return $rc
}

step_smoke() {
    local store work=${TMPDIR:-/tmp}/crlbench-gpu-smoke
    rm -rf "$work"
    store=$work/results
    mkdir -p "$work"
    local common=(suite=gpu_smoke executor=local "data.root=$GPU/data" "results.dir=$store"
                  "device=$DEVICE")
    local gray=() colour=(method=cmc dataset=digits_rgb)
    if [ "$TINY" = 1 ]; then
        common+=(backbone.name=convnet_tiny backbone.width=8 data.image_size=null
                 train.batch_size=128 train.precision=fp32 train.channels_last=false
                 train.compile=false eval.linear.epochs=2 eval.kmeans_restarts=1
                 eval.knn_k=[5,20] eval.retrieval_k=[1,10])
        gray=(dataset=digits)
    fi
    local limit=${GPU_CHECK_SMOKE_S:-170} pids=()
    for i in $(seq "$PROCS"); do
        timeout "$limit" "$PYTHON" -m crlbench run "${common[@]}" "${gray[@]}" \
            >"$work/run-$i.log" 2>&1 &
        pids+=($!)
    done
    timeout "$limit" "$PYTHON" -m crlbench run "${common[@]}" "${colour[@]}" \
        >"$work/run-cmc.log" 2>&1 &
    pids+=($!)
    for pid in "${pids[@]}"; do wait "$pid"; done
    for f in "$work"/run-*.log; do echo "== $(basename "$f")"; cat "$f"; done >"$OUT/smoke.log"
    tar -czf "$OUT/smoke-records.tar.gz" -C "$work" --exclude='*.pt' results
    "$PYTHON" scripts/gpu_smoke_summary.py "$store" "$OUT/smoke.json"
}

step_tests() {
    timeout "${GPU_CHECK_TESTS_S:-60}" "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider tests \
        >"$OUT/tests.log" 2>&1
    local rc=$?
    tail -n 15 "$OUT/tests.log"
    return $rc
}

device() {
    mkdir -p "$OUT"
    export PYTHONUNBUFFERED=1
    if [ "${GPU_CHECK_INSTALL:-1}" = 1 ]; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/crlbench-site "$GPU"/wheels/*.whl || return 1
        export PYTHONPATH=/tmp/crlbench-site${PYTHONPATH:+:$PYTHONPATH}
        CRLBENCH_GIT_COMMIT=$(cat "$GPU/COMMIT") && export CRLBENCH_GIT_COMMIT
    fi
    local first_failure=0 rc started
    for step in $STEPS; do
        started=$SECONDS
        echo "== step $step"
        "step_$step"
        rc=$?
        echo "== step $step: exit $rc after $((SECONDS - started)) s"
        [ "$rc" -ne 0 ] && [ "$first_failure" -eq 0 ] && first_failure=$rc
    done
    return "$first_failure"
}

case "${1:-}" in
    prepare) prepare ;;
    device) device ;;
    *) echo "usage: scripts/gpu_check.sh prepare|device" >&2; exit 2 ;;
esac
