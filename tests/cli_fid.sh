#!/bin/bash
# cli_fid.sh: `diffuse fid` end to end. The same images given as a float32 .npy, a uint8 .npy (the
# layout `diffuse sample --out x.npy` writes), an image folder and the dataset itself have FID 0;
# Fashion-MNIST's test split against 2000 training images lands where it was measured (2.72); the
# distance is symmetric; the statistics cache is used on the second run and gives the same answer;
# and each user error is one message with a non-zero exit.
. "$(dirname "$0")/lib.sh"
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    echo "FAIL: /usr/share/datasets/fashion-mnist is missing (apt-get install dataset-fashion-mnist)"; exit 1
fi
export XDG_CACHE_HOME="$T/cache"
F4=data/fid_fmnist16_f4.npy  # the first 16 test images, float32 16 x 1 x 28 x 28 in [-1, 1]
U1=data/fid_fmnist16_u1.npy  # the same, uint8 16 x 28 x 28 x 1
fid() { "$BIN" fid "$@" --threads 2 2>"$T/err"; }
fid_line() { sed -n 's/^FID: //p' "$1"; }

fid "$F4" fashion-mnist:test --n 16 >"$T/o1"
check "float .npy against the dataset: 0" grep -qx "FID: 0.00" "$T/o1"
check "prints the network" grep -q "^features: fmnist (Fashion-MNIST CNN, 128-d features, test accuracy 0.9" "$T/o1"
check "prints each side's N" grep -q "^A: $F4 (float32 .npy), 16 images of 1x28x28$" "$T/o1"
check "... and B's" grep -q "^B: fashion-mnist:test (dataset), 16 images of 1x28x28$" "$T/o1"
check "a progress line per side on stderr" grep -q "^features B 16/16 images" "$T/err"
fid "$F4" "$U1" >"$T/o2"
check "uint8 .npy against float .npy: 0" grep -qx "FID: 0.00" "$T/o2"
check "uint8 .npy named" grep -q "^B: $U1 (uint8 .npy), 16 images" "$T/o2"

# samples as .npy and as a folder of PNGs (the same seed: the same images, exact in 8 bits)
"$BIN" sample --sampler ddim --steps 2 --n 6 --seed 3 --out "$T/s.npy" --threads 2 >/dev/null 2>&1 || bad "sample .npy"
"$BIN" sample --sampler ddim --steps 2 --n 6 --seed 3 --out "$T/s/" --threads 2 >/dev/null 2>&1 || bad "sample folder"
fid "$T/s.npy" "$T/s" >"$T/o3"
check "samples: .npy against their PNG folder: 0" grep -qx "FID: 0.00" "$T/o3"
check "folder named" grep -q "^B: $T/s (image folder), 6 images of 1x28x28$" "$T/o3"

# a real distance: where it was measured, symmetric, and the same from the cache
fid fashion-mnist:test fashion-mnist --n 2000 >"$T/o4"
v=$(fid_line "$T/o4")
check "test vs 2000 train images: $v (measured 2.72)" awk -v v="$v" 'BEGIN { exit !(v >= 2.6 && v <= 2.85) }'
check "not from the cache the first time" bash -c "! grep -q cache '$T/o4'"
check "the cache has both sides" test "$(ls "$T/cache/diffuse/fid" | grep -c '\.safetensors$')" -ge 2
fid fashion-mnist fashion-mnist:test --n 2000 >"$T/o5"
check "symmetric and cached: $(fid_line "$T/o5")" test "$(fid_line "$T/o5")" = "$v"
check "both sides from the cache" test "$(grep -c 'statistics from the cache$' "$T/o5")" -eq 2
check "no progress when cached" bash -c "! grep -q '^features' '$T/err'"
fid fashion-mnist fashion-mnist:test --n 2000 --no-cache >"$T/o6"
check "--no-cache computes it again: the same" test "$(fid_line "$T/o6")" = "$v"
for f in "$T"/cache/diffuse/fid/*.safetensors; do printf 'garbage' >"$f"; done
fid fashion-mnist fashion-mnist:test --n 2000 >"$T/o7"
check "a broken cache file is recomputed: the same" test "$(fid_line "$T/o7")" = "$v"

# user errors: one message, non-zero exit
npy_f4() {  # PATH SHAPE COUNT VALUE: a float32 .npy of COUNT copies of VALUE (its 4 bytes, as printf escapes)
    local dict="{'descr': '<f4', 'fortran_order': False, 'shape': ($2), }"
    local pad=$((128 - 10 - ${#dict} - 1))  # the header (118 bytes, \x76) ends at byte 128
    { printf '\x93NUMPY\x01\x00\x76\x00%s%*s\n' "$dict" "$pad" ""; for _ in $(seq "$3"); do printf "$4"; done; } >"$1"
}
npy_f4 "$T/two.npy" "2, 1, 28, 28" 1568 '\x00\x00\x00\x40'  # 2.0
npy_f4 "$T/rgb.npy" "2, 3, 28, 28" 4704 '\x00\x00\x00\x3f'  # 0.5
"$BIN" sample --model data/diffusers_tiny --sampler ddim --steps 2 --n 3 --out "$T/tiny.npy" >/dev/null 2>&1 || bad "sample tiny"
"$BIN" sample --sampler ddim --steps 2 --n 1 --out "$T/one.npy" >/dev/null 2>&1 || bad "sample one"
expect_fail "missing .npy" "fid: .*nope\.npy" "$BIN" fid "$T/nope.npy" "$F4"
expect_fail "missing anything" "fid: cannot open .*/nothing: No such file or directory" "$BIN" fid "$F4" "$T/nothing"
expect_fail "bad dataset spec" "fid: .*fashion-mnist:val" "$BIN" fid fashion-mnist:val "$F4"
expect_fail "shape mismatch" "A \(.*\) has 1x28x28 images but B \(.*tiny\.npy\) has 1x8x8" "$BIN" fid "$F4" "$T/tiny.npy"
expect_fail "wrong size for fmnist" "takes 1x28x28 images, not 1x8x8 \(the default; for other images give --features inception" \
    "$BIN" fid "$T/tiny.npy" "$T/tiny.npy"
expect_fail "wrong channels for fmnist" "fmnist feature network takes 1x28x28 images, not 3x28x28$" \
    "$BIN" fid --features fmnist "$T/rgb.npy" "$T/rgb.npy"
expect_fail "values outside [-1, 1]" "two\.npy: value 2 at index 0 is outside \[-1, 1\]" "$BIN" fid "$T/two.npy" "$F4"
expect_fail "one image" "one\.npy has 1 image: the FID needs at least 2" "$BIN" fid "$T/one.npy" "$F4"
expect_fail "--n 1" "--n must be in 2\.\." "$BIN" fid "$F4" "$U1" --n 1
expect_fail "--n too large" "--n 17 is more than the 16 images of" "$BIN" fid "$F4" "$U1" --n 17
expect_fail "unknown network" "unknown feature network 'vgg'" "$BIN" fid "$F4" "$U1" --features vgg
expect_fail "inception without weights" "--features inception needs --weights" "$BIN" fid "$F4" "$U1" --features inception
expect_fail "weights of another network" "holds the 'fmnist' feature network, not 'inception'" \
    "$BIN" fid "$F4" "$U1" --features inception --weights ../models/fid-fmnist.safetensors
# --class-rows: samples of the shipped conditional model, 2 of each class (w = 3, 6 steps), are
# mostly classified as the class asked (measured 90%; 65% with the previous, 477-step model: the
# feature net is 91% accurate on real data, and 6 steps make rough clothes); a model that ignored
# its class would score ~10%
"$BIN" sample --model ../models/fmnist-cond.safetensors --class all --n 2 --guidance 3 --sampler dpm++2m \
    --steps 6 --seed 1 --threads 2 --out "$T/cond.npy" 2>/dev/null
fid "$T/cond.npy" fashion-mnist:test --class-rows 2 --n 20 > "$T/o8"
acc=$(sed -n 's/^classified as asked: \([0-9.]*\)% of 20 (.*/\1/p' "$T/o8")
check "classified as asked: ${acc}% (measured 90%)" awk -v a="$acc" 'BEGIN { exit !(a != "" && a >= 70) }'
check "... with each of the 10 classes" test "$(grep '^classified' "$T/o8" | grep -o '[0-9]: [0-9]*%' | wc -l)" -eq 10
expect_fail "--class-rows not dividing A" "A's 20 images are not whole rows of 3" \
    "$BIN" fid "$T/cond.npy" fashion-mnist:test --class-rows 3 --n 20
expect_fail "--class-rows making more rows than classes" "are 20 rows, more than the 10 classes" \
    "$BIN" fid "$T/cond.npy" fashion-mnist:test --class-rows 1 --n 20
expect_fail "one input" "needs two inputs, A and B" "$BIN" fid "$F4"
expect_fail "three inputs" "unexpected argument 'c'" "$BIN" fid a b c
finish cli_fid
