#!/usr/bin/env bash
# The current evidence queue on a 2-core CPU, in order of importance; every step resumes (finished runs are reused,
# unfinished ones continue from their checkpoints), so rerun this after any interruption. Start it twice: two
# copies share the work (a configuration one copy is running is left for later by the other, then reused).
#
#   nice -n 1 bash benchmark/queue.sh > queue_1.log 2>&1 &
#   nice -n 1 bash benchmark/queue.sh > queue_2.log 2>&1 &
#
# 1. The paper's 5 seeds for Table 2 on cartpole and mountain_car at 50k updates (the 3-seed rows on catch stand:
#    every method but BC is at the maximum there), and Table 1 on catch with the paper's environment noise.
# 2. The six methods on Atari with the small networks and the tracker's behaviour data (about 45 CPU-hours: it runs
#    over several sessions, each configuration resuming from its checkpoints; docs/atari.md).
# 3. The low-budget search study: MZU with 2 and 4 simulations, MuZero's search and Gumbel's, against ROSMO.
# 4. The learning-rate schedule and CQL's setting decided again on seeds 5-7.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}

BSUITE=(--num-seeds 5 --total-steps 50000 --lr-decay-steps 25000)
$PY -m benchmark.reproduce --study table2 --envs cartpole mountain_car "${BSUITE[@]}" \
    --algos rosmo mzu mzu_q cql crr bc bc-greedy rosmo-data
$PY -m benchmark.time_to_score benchmark/results/table2_cartpole_mountain_car_50k.json
$PY -m benchmark.reproduce --study noise --envs catch "${BSUITE[@]}"

# 2. Atari (the tracker's data first, if missing: a few CPU-minutes for Breakout and Pong).
$PY -m benchmark.reproduce --study atari_small
$PY -m benchmark.time_to_score benchmark/results/atari_small_30k.json

$PY -m benchmark.reproduce --study search_budget --envs cartpole mountain_car --num-seeds 3 --total-steps 50000 \
    --lr-decay-steps 25000 --searches muzero gumbel --simulations 2 4 --depths 0

# 4. The choices made on the reported seeds, made again on seeds they never saw (5-7): the learning-rate schedule of
#    every row (ROSMO on cartpole) and CQL's setting (its sweep); their reports carry _seeds5-7 in their names.
$PY -m benchmark.reproduce --study lr_decay --seed 5 --num-seeds 3 --total-steps 50000
$PY -m benchmark.reproduce --study cql_sweep --seed 5 --num-seeds 3 --total-steps 50000 --lr-decay-steps 25000
