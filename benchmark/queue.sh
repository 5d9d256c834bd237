#!/usr/bin/env bash
# The current evidence queue on a 2-core CPU, as two lanes that keep both cores busy; every step resumes (finished
# runs are reused, unfinished ones continue from their checkpoints), so rerun this after any interruption:
#
#   nice -n 1 bash benchmark/queue.sh atari    > queue_atari.log 2>&1 &
#   nice -n 1 bash benchmark/queue.sh evidence > queue_evidence.log 2>&1 &
#
# A lane that runs out of its own work joins the other's (a configuration the other lane is running is left for
# later, then reused), so both cores stay busy to the end.
#
# atari:    the six methods on Atari, small networks, the tracker's data (about 14 idle CPU-hours at 10k
#           updates: over several sittings, one run per seed, each kept when it finishes; docs/atari.md),
#           then time to score on it.
# evidence: the paper's 5 seeds for Table 2 and Table 1 on catch (finished: reused), the choices made on the
#           reported seeds made again on seeds they never saw (5-7: the learning-rate schedule of every row and
#           CQL's setting; their reports carry _seeds5-7 in their names), then the low-budget search study (MZU
#           with 2 and 4 simulations, MuZero's search and Gumbel's, against ROSMO).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
BSUITE=(--num-seeds 5 --total-steps 50000 --lr-decay-steps 25000)

atari() {
    $PY -m benchmark.reproduce --study atari_small
    $PY -m benchmark.time_to_score benchmark/results/atari_small_10k.json
}

evidence() {
    $PY -m benchmark.reproduce --study table2 --envs cartpole mountain_car "${BSUITE[@]}" \
        --algos rosmo mzu mzu_q cql crr bc bc-greedy rosmo-data cql-alpha0.1
    $PY -m benchmark.time_to_score benchmark/results/table2_cartpole_mountain_car_50k.json
    $PY -m benchmark.reproduce --study noise --envs catch "${BSUITE[@]}"
    $PY -m benchmark.reproduce --study lr_decay --seed 5 --num-seeds 3 --total-steps 50000
    $PY -m benchmark.reproduce --study cql_sweep --seed 5 --num-seeds 3 --total-steps 50000 --lr-decay-steps 25000
    $PY -m benchmark.reproduce --study search_budget --envs cartpole mountain_car --num-seeds 3 --total-steps 50000 \
        --lr-decay-steps 25000 --searches muzero gumbel --simulations 2 4 --depths 0
}

case "${1:-}" in
    atari) atari; evidence ;;
    evidence) evidence; atari ;;
    *) echo "usage: bash benchmark/queue.sh {atari|evidence}" >&2; exit 2 ;;
esac
