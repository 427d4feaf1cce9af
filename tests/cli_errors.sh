#!/usr/bin/env bash
# Every user error gives one clear message naming the problem and a non-zero exit, and leaves no
# output file behind. Usage: cli_errors.sh PATH/TO/diffuse
. "$(dirname "$0")/lib.sh"

expect_fail "no command" "no command given" "$BIN"
expect_fail "unknown command" "unknown command 'fly'" "$BIN" fly
expect_fail "unknown flag" "unknown option '--bogus'" "$BIN" train --bogus 3
expect_fail "bad number" "--steps expects an integer, got 'ten'" "$BIN" train --steps ten
expect_fail "missing value" "--out needs a value" "$BIN" train --out
expect_fail "unknown toy" "unknown toy data 'spiral'" "$BIN" train --data toy:spiral --out "$T/r"
expect_fail "unknown schedule" "unknown schedule 'fancy'" "$BIN" train --schedule fancy --out "$T/r"
expect_fail "unknown pred" "unknown parameterisation 'score'" "$BIN" train --pred score --out "$T/r"
P="unknown precision 'fp16' \(valid: fp32, bf16\)"
expect_fail "unknown precision (train)" "$P" "$BIN" train --precision fp16 --out "$T/r"
expect_fail "unknown precision (sample)" "$P" "$BIN" sample --model "$T/none.safetensors" --precision fp16 --out "$T/p.png"
expect_fail "unknown precision (eval)" "$P" "$BIN" eval --model "$T/none.safetensors" --data fashion-mnist:test --precision fp16
expect_fail "unknown precision (predict)" "$P" "$BIN" predict --model "$T/none.safetensors" --input "$T/x.npy" --t 0 \
    --out "$T/y.npy" --precision fp16
# CPU levels (src/cpu/cpu.c): an unknown name, another architecture's, and one this CPU lacks
expect_fail "unknown CPU level" "DIFFUSE_ISA: unknown CPU level 'foo' \(levels: generic" env DIFFUSE_ISA=foo "$BIN" train --data toy:moons --out "$T/r"
case "$(uname -m)" in
x86_64) other=neon; [ -z "$(grep -m1 -o avx512f /proc/cpuinfo)" ] && missing=avx512 || missing="" ;;
*) other=avx2; missing="" ;;
esac
expect_fail "CPU level of another architecture" "CPU level '$other' belongs to another architecture" \
    env DIFFUSE_ISA=$other "$BIN" sample --model "$T/none.safetensors" --out "$T/p.png"
[ -n "$missing" ] && expect_fail "CPU level this CPU lacks" "DIFFUSE_ISA=$missing: this CPU lacks" \
    env DIFFUSE_ISA=$missing "$BIN" train --data toy:moons --out "$T/r"
if [ -e "$T/r" ]; then bad "a refused CPU level left $T/r behind"; else ok "a refused CPU level wrote nothing"; fi
expect_fail "model too large for memory" "the U-Net at batch 64 for training \(1.6 M parameters\) needs 0.[0-9]+ GiB of memory but only 0.10 GiB is available" \
    env DIFFUSE_MEMORY_MB=100 "$BIN" train --data fashion-mnist --steps 1 --out "$T/r"
expect_fail "missing data file" "cannot open $T/nope.csv" "$BIN" train --data "csv:$T/nope.csv" --out "$T/r"
printf 'x,y\n1,2\n3,oops\n' > "$T/bad.csv"
expect_fail "malformed csv" "bad.csv:3: expected two numbers" "$BIN" train --data "csv:$T/bad.csv" --out "$T/r"
printf '# nothing\n' > "$T/empty.csv"
expect_fail "empty csv" "empty.csv: no points found" "$BIN" train --data "csv:$T/empty.csv" --out "$T/r"
expect_fail "missing model" "cannot open|No such file" "$BIN" sample --model "$T/none.safetensors" --out "$T/s.csv"
expect_fail "DIFFUSE_MODEL missing" "cannot open|No such file" env DIFFUSE_MODEL="$T/none.safetensors" "$BIN" sample --out "$T/s.csv"

# A real small checkpoint to damage.
"$BIN" train --data toy:moons --out "$T/run" --steps 20 --batch 16 --hidden 16 --layers 1 --plot-n 10 >/dev/null 2>&1 \
    || { echo "FAIL: could not train the small model"; exit 1; }
CK="$T/run/model.safetensors"
size=$(stat -c %s "$CK")
head -c $((size / 2)) "$CK" > "$T/truncated.safetensors"
expect_fail "truncated checkpoint" "truncated" "$BIN" sample --model "$T/truncated.safetensors" --out "$T/s1.csv"
head -c 7 "$CK" > "$T/tiny.safetensors"
expect_fail "tiny checkpoint" "truncated|too small|short" "$BIN" sample --model "$T/tiny.safetensors" --out "$T/s2.csv"
{ printf '\x10\x00\x00\x00\x00\x00\x00\x00'; printf 'this is not json'; } > "$T/garbage.safetensors"
expect_fail "corrupt header" "JSON|json" "$BIN" sample --model "$T/garbage.safetensors" --out "$T/s3.csv"
LC_ALL=C sed 's/"mlp.hidden":"16"/"mlp.hidden":"32"/' "$CK" > "$T/wrongshape.safetensors"
expect_fail "wrong-sized config" "describes [0-9]+ parameters but the file holds [0-9]+ weight values" "$BIN" sample --model "$T/wrongshape.safetensors" --out "$T/s4.csv"
LC_ALL=C sed 's/"diffusion.pred":"eps"/"diffusion.pred":"xyz"/' "$CK" > "$T/badmeta.safetensors"
expect_fail "bad metadata" "unknown parameterisation 'xyz'" "$BIN" sample --model "$T/badmeta.safetensors" --out "$T/s5.csv"
expect_fail "points need csv" "must end in .csv" "$BIN" sample --model "$CK" --out "$T/s.png"
for f in s1 s2 s3 s4 s5; do
    if [ -e "$T/$f.csv" ]; then bad "$f.csv was written despite the error"; fi
done
if ls "$T"/*.tmp.* >/dev/null 2>&1; then bad "temporary files left behind"; fi

finish cli_errors
