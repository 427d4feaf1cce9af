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

# Count flags: a value outside the flag's range (0 included, where 0 would mean nothing) is one
# message naming the flag and the range, given before any model or data is read and nothing written;
# a 0 is never quietly read as the default. (Where 0 means something, --help says what.)
R="$T/refused"
expect_fail "train --batch 0" "--batch must be in 1\.\.1048576 \(got 0\)" "$BIN" train --data toy:8gaussians --batch 0 --out "$R"
expect_fail "train --lr 0" "--lr must be in \(0, 1\] \(got 0\)" "$BIN" train --data toy:8gaussians --steps 2 --lr 0 --out "$R"
expect_fail "train --ema 1" "--ema must be in \[0, 1\) \(got 1;" "$BIN" train --data toy:8gaussians --steps 2 --ema 1 --out "$R"
expect_fail "train --steps 0" "--steps must be at least 1 \(got 0\)" "$BIN" train --steps 0 --out "$R"
expect_fail "train --timesteps 1" "--timesteps must be at least 2 \(got 1\)" "$BIN" train --timesteps 1 --out "$R"
expect_fail "train --hidden 0" "--hidden must be in 1\.\.65536 \(got 0\)" "$BIN" train --hidden 0 --out "$R"
expect_fail "train --layers 0" "--layers must be in 1\.\.32 \(got 0\)" "$BIN" train --layers 0 --out "$R"
expect_fail "train --plot-n 0" "--plot-n must be at least 1 \(got 0\)" "$BIN" train --plot-n 0 --out "$R"
expect_fail "train --grid-n 0" "--grid-n must be in 1\.\.1024 \(got 0\)" "$BIN" train --data fashion-mnist --grid-n 0 --out "$R"
expect_fail "train --res-blocks 0" "--res-blocks must be at least 1 \(got 0\)" "$BIN" train --data fashion-mnist --res-blocks 0 --out "$R"
expect_fail "train --ckpt-every -1" "--ckpt-every must be at least 0 \(got -1\)" "$BIN" train --ckpt-every -1 --out "$R"
expect_fail "train --threads -1" "--threads must be in 0\.\.4096 \(got -1\)" "$BIN" train --threads -1 --out "$R"
expect_fail "sample --n 0" "--n must be in 1\.\.10000000 \(got 0\)" "$BIN" sample --model "$T/none.safetensors" --n 0 --out "$R.csv"
expect_fail "sample --batch 0" "--batch must be in 1\.\.65536 \(got 0\)" "$BIN" sample --model "$T/none.safetensors" --batch 0 --out "$R.csv"
expect_fail "sample --steps 0" "--steps must be at least 1 \(got 0\)" "$BIN" sample --model "$T/none.safetensors" --steps 0 --out "$R.csv"
expect_fail "eval --n 0" "--n must be in 1\.\.100000000 \(got 0\)" "$BIN" eval --model "$T/none.safetensors" --data toy:moons --n 0
expect_fail "eval --batch 0" "--batch must be in 1\.\.65536 \(got 0\)" "$BIN" eval --model "$T/none.safetensors" --data toy:moons --batch 0
expect_fail "predict --threads -1" "--threads must be in 0\.\.4096 \(got -1\)" "$BIN" predict --threads -1
if [ -e "$R" ] || [ -e "$R.csv" ]; then bad "a refused count left output behind"; else ok "refused counts wrote nothing"; fi
"$BIN" train --data toy:moons --out "$T/zeros" --steps 5 --batch 16 --hidden 16 --layers 1 --plot-n 10 --threads 0 \
    --ckpt-every 0 --snapshot-every 0 --nan-skip 0 >/dev/null 2>"$T/zeros.err"
check "0 where it means something (--threads, --ckpt-every, --snapshot-every, --nan-skip) is accepted" \
    test -s "$T/zeros/checkpoint.safetensors"

# --data is read by the library's grammar (df_dataset_spec_check), not a copy of it: fashion-mnistX
# names no dataset (so it is read as 2-D data, and refused there), fashion-mnist:val is a bad one.
expect_fail "fashion-mnistX is no dataset" "unknown 2-D data 'fashion-mnistX' \(use toy:NAME or csv:FILE\)" \
    "$BIN" train --data fashion-mnistX --out "$R"
expect_fail "bad dataset split" "dataset 'fashion-mnist:val': fashion-mnist has splits train and test" \
    "$BIN" train --data fashion-mnist:val --out "$R"
expect_fail "dataset without a directory" "dataset 'mnist:': no directory given" "$BIN" train --data mnist: --out "$R"
if [ -e "$R" ]; then bad "a refused --data left $R behind"; else ok "refused --data wrote nothing"; fi

# Without --model, eval and predict take the default model as sample does: $DIFFUSE_MODEL first.
expect_fail "DIFFUSE_MODEL missing (eval)" "cannot open|No such file" env DIFFUSE_MODEL="$T/none.safetensors" \
    "$BIN" eval --data fashion-mnist:test
hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }"
{ printf '\x93NUMPY\x01\x00\x76\x00%s%*s\n' "$hdr" $((128 - 10 - ${#hdr} - 1)) ''; head -c 8 /dev/zero; } > "$T/x.npy"
expect_fail "DIFFUSE_MODEL missing (predict)" "cannot open|No such file" env DIFFUSE_MODEL="$T/none.safetensors" \
    "$BIN" predict --input "$T/x.npy" --t 0 --out "$T/y.npy"

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
# --device: a CUDA device on a build or machine without one is one clear message, before any work
for cmd in "train --data toy:moons --steps 2 --out $T/dev" "sample --model $CK --out $T/dev.csv" \
           "eval --model $CK --n 8" "predict --model $CK --input x.npy --t 1 --out $T/dev.npy"; do
    expect_fail "${cmd%% *} --device cuda" "use --device cpu" "$BIN" $cmd --device cuda
done
expect_fail "--device gpu" "unknown device 'gpu'" "$BIN" sample --model "$CK" --out "$T/dev.csv" --device gpu
if [ -e "$T/dev" ] || [ -e "$T/dev.csv" ] || [ -e "$T/dev.npy" ]; then bad "--device cuda wrote something"; fi
if ls "$T"/*.tmp.* >/dev/null 2>&1; then bad "temporary files left behind"; fi

finish cli_errors
