#!/usr/bin/env bash
# The accelerator checks in one command (at most about 9 minutes on one GPU): learner throughput at the paper's size
# for ROSMO and MZU in both precisions, then the first run of the small Atari study with the paper-size networks.
# Every output names the device it ran on (benchmark/results/learner_gpu_*.md record it; results.json lists the
# run's devices).
#
#   bash benchmark/gpu.sh [OUT_DIR]       # OUT_DIR (default runs/gpu) receives the logs and copies of the tables
#
# On a machine without internet, carry the wheels of requirements.txt for its Python in .wheels/ (made where
# there is a network: pip download -r requirements.txt -d .wheels --python-version 3.X --only-binary=:all:) and
# the study's behaviour data (datasets/atari_tracker/, made by python -m common.atari.behaviour --controller tracker); JAX with CUDA
# must already be there. The script installs nothing when the packages import.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}

if ! $PY -c "import flax, optax, chex, mctx, tyro, tensorboardX, ale_py, gymnasium" 2>/dev/null; then
    if [ -d .wheels ]; then
        $PY -m pip install --quiet --no-index --find-links .wheels flax optax chex mctx tyro tqdm tensorboardX \
            gymnasium ale-py opencv-python-headless google-crc32c bsuite 2>&1 | tail -3
    else
        echo "error: the project's packages do not import and there is no .wheels/ to install them from" >&2
        exit 2
    fi
fi
$PY -c "import jax; print('devices:', jax.devices())" | tee "$OUT/devices.txt"

# 1. Learner throughput at the paper's size (Table 3: batch 512), both precisions: about 2 minutes each.
for dtype in bfloat16 float32; do
    timeout 240 $PY -m benchmark.learner --algos rosmo mzu --compute-dtype "$dtype" --num-updates 50 \
        --out "benchmark/results/learner_gpu_${dtype}.md" 2>&1 | tail -4 | tee -a "$OUT/learner.log"
done

# 2. The small Atari study's first run (ROSMO on Breakout, 3 seeds, 10k updates) with the paper-size networks, as
#    far as 4 minutes take it; its results.json (with its devices) and the TensorBoard files are under runs/.
if [ -d datasets/atari_tracker/Breakout ]; then
    timeout 240 $PY rosmo.py --env-id Breakout --data-dir datasets/atari_tracker --network-size paper \
        --batch-size 32 --eval-max-steps 2000 --warmup-steps 200 --num-seeds 3 --total-steps 10000 --eval-every 1000 \
        --eval-episodes 5 --exp-name gpu_atari_small_paper 2>&1 | tail -5 | tee "$OUT/atari_small_paper.log"
    cp runs/Breakout__gpu_atari_small_paper__*/results.json "$OUT/atari_small_paper_results.json" 2>/dev/null
else
    echo "no datasets/atari_tracker/Breakout: skipping the study run (carry the data)" | tee "$OUT/atari_small_paper.log"
fi
cp benchmark/results/learner_gpu_*.md "$OUT/" 2>/dev/null
echo "done: $OUT"
