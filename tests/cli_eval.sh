#!/bin/bash
# cli_eval.sh: `diffuse eval` end to end on a tiny 2-D model: the printed bound, the CSV (its rows add up
# to the printed total), the plot, batch independence, and one message + non-zero exit per user error.
. "$(dirname "$0")/lib.sh"
fail() { echo "FAIL: $*"; exit 1; }
"$BIN" train --data toy:moons --out "$T/run" --steps 100 --timesteps 100 --threads 2 >/dev/null 2>&1 || fail "train"
M="$T/run/model.safetensors"
"$BIN" eval --model "$M" --data toy:moons --n 50 --csv "$T/t.csv" --plot "$T/t.png" >"$T/out" 2>"$T/err" || fail "eval: $(cat "$T/err")"
grep -q '^nats/point = [0-9.-]* +- [0-9.]* (standard error) over 50 points' "$T/out" || fail "no bound line: $(cat "$T/out")"
[ -s "$T/t.png" ] || fail "no plot"
[ "$(head -1 "$T/t.csv")" = "t,nats_per_point,se,weight" ] || fail "csv header"
[ "$(wc -l <"$T/t.csv")" -eq 101 ] || fail "csv rows: $(wc -l <"$T/t.csv")"
total=$(sed -n 's/^nats\/point = \([0-9.-]*\) .*/\1/p' "$T/out")
prior=$(sed -n 's/^  prior L_T *\([0-9.e-]*\) .*/\1/p' "$T/out")
awk -F, -v total="$total" -v prior="$prior" 'NR > 1 { s += $2 * $4 } END { d = s + prior - total; if (d < 0) d = -d; exit !(d < 2e-3) }' \
    "$T/t.csv" || fail "csv rows do not add up to $total"
"$BIN" eval --model "$M" --data toy:moons --n 50 --batch 7 >"$T/out7" 2>/dev/null || fail "eval batch 7"
cmp -s "$T/out" "$T/out7" || fail "batch 7 gives another result"
"$BIN" eval --model "$M" --data toy:moons --n 20 --timesteps-subset 9 2>/dev/null | grep -q '9 of the 99 KL terms' || fail "subset"
expect_error() {  # expected exit code, message fragment, args...
    local code="$1" msg="$2"
    shift 2
    "$BIN" eval "$@" >/dev/null 2>"$T/e"
    local rc=$?
    [ "$rc" -eq "$code" ] || fail "eval $*: exit $rc, want $code ($(cat "$T/e"))"
    grep -q -- "$msg" "$T/e" || fail "eval $*: message '$(cat "$T/e")' lacks '$msg'"
}
# no --model: the default model, as for sample (the shipped fmnist-small, an image model)
expect_error 2 "an image model needs image data" --data toy:moons
expect_error 2 "--data is required" --model "$M"
expect_error 1 "cannot open" --model "$T/nope.safetensors" --data toy:moons
expect_error 2 "needs toy:NAME or csv:FILE" --model "$M" --data fashion-mnist:test
expect_error 2 "must be in 0..99" --model "$M" --data toy:moons --timesteps-subset 100
expect_error 2 "unknown toy data" --model "$M" --data toy:nope
expect_error 2 "contradict" --model "$M" --data toy:moons --clip --no-clip
expect_error 1 "cannot write" --model "$M" --data toy:moons --csv "$T/no/such/dir/t.csv"
printf 'x,y\n0.1,0.2\n' >"$T/p.csv"
expect_error 2 "more than the 1 points" --model "$M" --data "csv:$T/p.csv" --n 2
echo "cli_eval: ok"
