#!/usr/bin/env bash
# Killed runs lose nothing: training is killed with SIGKILL at random moments, many times (some
# during checkpoint writes), and resumed each time; the final model must equal the one from an
# uninterrupted run with the same seed, bit for bit. Ctrl-C (SIGINT) and SIGTERM write a
# checkpoint and exit cleanly. Usage: cli_kill.sh PATH/TO/diffuse
. "$(dirname "$0")/lib.sh"
common=(--data toy:checkerboard --batch 32 --hidden 32 --layers 2 --plot-n 50 --seed 11 --steps 20000 --ckpt-every 50
        --threads 1)

"$BIN" train "${common[@]}" --out "$T/ref" 2>/dev/null
check "uninterrupted run" test -s "$T/ref/model.safetensors"

RANDOM=42
kills=0
done_ok=0
# Up to 20 kills at random moments, then the run is left to finish (on a slow or loaded machine
# the kills alone might never let it reach the end).
for attempt in $(seq 1 21); do
    extra=()
    [ -e "$T/run/checkpoint.safetensors" ] && extra=(--resume)
    if [ $attempt -eq 21 ]; then
        "$BIN" train "${common[@]}" --out "$T/run" "${extra[@]}" 2>>"$T/log" && done_ok=1
        break
    fi
    "$BIN" train "${common[@]}" --out "$T/run" "${extra[@]}" 2>>"$T/log" &
    pid=$!
    sleep "0.$((RANDOM % 40 + 5))"
    if kill -0 $pid 2>/dev/null; then
        kill -9 $pid 2>/dev/null
        wait $pid 2>/dev/null
        kills=$((kills + 1))
        # whatever was on disk at the kill must load
        if [ -e "$T/run/checkpoint.safetensors" ]; then
            "$BIN" info --model "$T/run/checkpoint.safetensors" >/dev/null 2>&1 || bad "checkpoint unreadable after kill $kills"
        fi
    else
        wait $pid && { done_ok=1; break; }
    fi
done
echo "killed $kills times"
check "run finished after kills" test $done_ok -eq 1
check "killed at least 5 times" test $kills -ge 5
check "killed-and-resumed model equals uninterrupted model" cmp -s "$T/ref/model.safetensors" "$T/run/model.safetensors"
check "loss log equals uninterrupted log" cmp -s <(cut -d, -f1-3 "$T/ref/loss.csv") <(cut -d, -f1-3 "$T/run/loss.csv")
# a kill during a write leaves "<file>.tmp.<pid>"; the next start removes such leftovers
check "no temporary files left after the final run" bash -c "! ls '$T'/run/*.tmp.* >/dev/null 2>&1 || { ls '$T'/run; false; }"

for sig in INT TERM; do
    rm -rf "$T/s"
    "$BIN" train "${common[@]}" --steps 1000000 --out "$T/s" 2>"$T/sig.err" &
    pid=$!
    sleep 0.5
    kill -$sig $pid
    wait $pid
    rc=$?
    check "SIG$sig exits with 130" test $rc -eq 130
    check "SIG$sig message says where the checkpoint is" grep -q "stopped at step [0-9]*; checkpoint written" "$T/sig.err"
    check "SIG$sig checkpoint loads" bash -c "\"$BIN\" info --model \"$T/s/checkpoint.safetensors\" >/dev/null"
done

finish cli_kill
