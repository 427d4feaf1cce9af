#!/bin/bash
# The parameterisation study of docs/results.md: fmnist-small on Fashion-MNIST, every run the same
# seed and the same budget. Two runs at a time, one thread each. The budget is a number of optimiser
# steps, not minutes: every run costs the same per step (same network, same batch), and a step budget
# keeps a busy machine or a slower core from favouring one run. STEPS=700 is about 15 minutes of one
# core of the study machine (44-50 img/s at batch 64).
#   tools/study.sh linear            # mean|x0|eps x simple|vlb on the linear schedule
#   tools/study.sh schedules PRED LOSS   # cosine and exponential with the best of those
#   tools/study.sh eval              # test bits/dim of every finished run (skips those already done)
# Env: STEPS (default 700), OUT (default runs/study), DIFFUSE (default build/diffuse).
set -euo pipefail
STEPS=${STEPS:-700}
OUT=${OUT:-runs/study}
DIFFUSE=${DIFFUSE:-build/diffuse}
mkdir -p "$OUT"

run() {  # run NAME ARGS... (skipped when that run already finished: the script can be restarted)
    local name=$1
    shift
    [ -f "$OUT/$name/model.safetensors" ] && grep -q "^$STEPS," "$OUT/$name/loss.csv" 2>/dev/null && return 0
    OMP_NUM_THREADS=1 "$DIFFUSE" train --data fashion-mnist --preset fmnist-small \
        --steps "$STEPS" --threads 1 --seed 0 --out "$OUT/$name" "$@" >"$OUT/$name.log" 2>&1
}

pair() {  # pair NAME1 "ARGS1" NAME2 "ARGS2"
    run "$1" $2 &
    local a=$!
    run "$3" $4 &
    local b=$!
    wait $a
    wait $b
}

# Test bits/dim: the first EVAL_N (default 256) test images, the same images and noise for every run,
# so differences between runs are paired; EVAL_K (default 100) KL terms in geometric strata. Two
# `tools/study.sh eval` may run at once (EVAL_THREADS=1 each): a lock directory shares out the runs.
evaluate() {
    local dir
    for dir in "$OUT"/*/; do
        dir=${dir%/}
        [ -f "$dir/model.safetensors" ] && [ ! -f "$dir/eval.txt" ] || continue
        mkdir "$dir/eval.lock" 2>/dev/null || continue  # another evaluate (run in parallel) has it
        "$DIFFUSE" eval --model "$dir/model.safetensors" --data fashion-mnist:test --n "${EVAL_N:-256}" \
            --timesteps-subset "${EVAL_K:-100}" --seed 0 --threads "${EVAL_THREADS:-1}" --csv "$dir/bound.csv" \
            --plot "$dir/bound.png" >"$dir/eval.tmp" 2>"$dir/eval.log" && mv "$dir/eval.tmp" "$dir/eval.txt"
        rmdir "$dir/eval.lock"
    done
}

case "${1:-}" in
eval)
    evaluate
    ;;
linear)
    pair eps-simple "--pred eps --loss simple" eps-vlb "--pred eps --loss vlb"
    pair x0-simple "--pred x0 --loss simple" x0-vlb "--pred x0 --loss vlb"
    pair mean-simple "--pred mean --loss simple" mean-vlb "--pred mean --loss vlb"
    ;;
schedules)
    p=$2 l=$3
    pair "$p-$l-cosine" "--pred $p --loss $l --schedule cosine" "$p-$l-exponential" "--pred $p --loss $l --schedule exponential"
    ;;
*)
    echo "usage: tools/study.sh linear | schedules PRED LOSS | eval" >&2
    exit 2
    ;;
esac
