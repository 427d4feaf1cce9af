#!/usr/bin/env bash
# Images end to end through the CLI on a tiny U-Net over Fashion-MNIST (Debian's
# dataset-fashion-mnist, installed by .ci/deps): train writes its files; a run stopped and
# resumed (with dropout on) ends bit-identical to an uninterrupted one; sampling writes a grid,
# a folder and a .npy, reproducibly; predict runs the network alone; bad image inputs fail
# cleanly. Usage: cli_images.sh PATH/TO/diffuse
. "$(dirname "$0")/lib.sh"
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    echo "FAIL: /usr/share/datasets/fashion-mnist is missing (apt-get install dataset-fashion-mnist)"; exit 1
fi
tiny=(--data fashion-mnist --base-channels 8 --mult 1,2 --res-blocks 1 --attn-res 14 --groups 4 --dropout 0.1
      --batch 8 --grid-n 4 --seed 7 --threads 2)

"$BIN" train "${tiny[@]}" --out "$T/a" --steps 6 2>"$T/a.log"
check "train exits 0" test $? -eq 0
for f in model.safetensors checkpoint.safetensors loss.csv loss.png samples.png; do
    check "train wrote $f" test -s "$T/a/$f"
done
"$BIN" train "${tiny[@]}" --out "$T/b" --steps 3 2>/dev/null
"$BIN" train "${tiny[@]}" --out "$T/b" --steps 6 --resume 2>/dev/null
check "resumed image model equals uninterrupted model" cmp -s "$T/a/model.safetensors" "$T/b/model.safetensors"

M="$T/a/model.safetensors"
"$BIN" sample --model "$M" --n 5 --sampler ddim --steps 4 --out "$T/g.png" --trajectory "$T/traj.png" 2>/dev/null
check "sample grid" test -s "$T/g.png"
check "trajectory" test -s "$T/traj.png"
"$BIN" sample --model "$M" --n 5 --sampler ddim --steps 4 --out "$T/s1.npy" --batch 2 2>/dev/null
"$BIN" sample --model "$M" --n 5 --sampler ddim --steps 4 --out "$T/s2.npy" --batch 5 --threads 1 2>/dev/null
check "npy samples reproducible across batch and threads" cmp -s "$T/s1.npy" "$T/s2.npy"
# NumPy header: magic, uint8, shape (5, 28, 28, 1)
check "npy header" grep -aq "'descr': '|u1', 'fortran_order': False, 'shape': (5, 28, 28, 1)" "$T/s1.npy"
"$BIN" sample --model "$M" --n 3 --sampler ddim --steps 2 --out "$T/dir/" 2>/dev/null
check "one PNG per sample" test "$(ls "$T/dir" | wc -l)" -eq 3
"$BIN" sample --model "$M" --n 2 --sampler ancestral --out "$T/anc.png" 2>/dev/null
check "ancestral sampling" test -s "$T/anc.png"

# predict on the stored samples' shape: build an input .npy with the CLI's own output? Use a float32 npy
# written by the shell: header for (2, 1, 28, 28) float32 followed by zeros.
hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1, 28, 28), }"
pad=$((128 - 10 - ${#hdr} - 1))
{ printf '\x93NUMPY\x01\x00\x76\x00'; printf '%s' "$hdr"; printf '%*s' $pad ''; printf '\n'; head -c $((2*784*4)) /dev/zero; } > "$T/x.npy"
"$BIN" predict --model "$M" --input "$T/x.npy" --t 0,999 --out "$T/y.npy" 2>"$T/p.err"
check "predict" test -s "$T/y.npy"
check "predict output size" test "$(stat -c %s "$T/y.npy")" -eq $((128 + 2*784*4))
# --noise: the same x_T (here all zeros) through a deterministic sampler gives the same samples
# whatever the seed; its N is the sample count, and a disagreeing --n is refused
"$BIN" sample --model "$M" --noise "$T/x.npy" --sampler dpm++2m --steps 5 --seed 1 --out "$T/n1.npy" 2>/dev/null
"$BIN" sample --model "$M" --noise "$T/x.npy" --sampler dpm++2m --steps 5 --seed 2 --out "$T/n2.npy" 2>/dev/null
check "dpm++2m from a given x_T" test -s "$T/n1.npy"
check "given x_T: the seed does not matter" cmp -s "$T/n1.npy" "$T/n2.npy"
check "given x_T: N = 2 samples" grep -aq "'shape': (2, 28, 28, 1)" "$T/n1.npy"
"$BIN" sample --model "$M" --noise "$T/x.npy" --sampler unipc --steps 5 --seed 3 --out "$T/u1.npy" 2>/dev/null
check "unipc from a given x_T" test -s "$T/u1.npy"
"$BIN" sample --model "$M" --noise "$T/x.npy" --sampler unipc --steps 5 --seed 4 --out "$T/u2.npy" 2>/dev/null
check "unipc from a given x_T: the seed does not matter" cmp -s "$T/u1.npy" "$T/u2.npy"
"$BIN" sample --model "$M" --noise "$T/x.npy" --n 3 --out "$T/n3.npy" 2>"$T/n3.err"
check "--noise with a disagreeing --n refused" test $? -ne 0 -a ! -e "$T/n3.npy"
check "... naming both" grep -q "holds 2 samples but --n is 3" "$T/n3.err"
"$BIN" predict --model "$M" --input "$T/x.npy" --t 0,1,2 --out "$T/y2.npy" 2>"$T/p2.err"
check "predict refuses a wrong count of timesteps" grep -q "one per input" "$T/p2.err"
"$BIN" info --model "$M" > "$T/info" 2>&1
check "info shows the U-Net" grep -q "block_out_channels: 8 16" "$T/info"

# bad image data
"$BIN" train --data folder:"$T/nothing" --out "$T/c" --steps 1 2>"$T/e1"
check "missing folder is refused" grep -q "nothing" "$T/e1"
mkdir -p "$T/imgs"; echo "not a png" > "$T/imgs/a.png"
"$BIN" train --data folder:"$T/imgs" --out "$T/c" --steps 1 2>"$T/e2"
check "undecodable image is refused, naming the file" grep -q "a.png" "$T/e2"
"$BIN" train --data fashion-mnist --preset ddpm-cifar10 --out "$T/c" --steps 1 2>"$T/e3"
check "wrong-sized data for the preset is refused" grep -q "1x28x28 but the model expects 3x32x32" "$T/e3"
"$BIN" train "${tiny[@]}" --groups 3 --out "$T/c" --steps 1 2>"$T/e4"
check "bad U-Net config is refused" grep -q "group" "$T/e4"

# The shipped model: `diffuse sample` without --model finds models/fmnist-small.safetensors (here
# through the source tree the binary was built from) and says so.
"$BIN" sample --n 2 --sampler ddim --steps 3 --out "$T/shipped.png" 2>"$T/e5"
check "sample without --model uses the shipped model" test -s "$T/shipped.png"
check "and says which file" grep -q "no --model given, using .*models/fmnist-small.safetensors" "$T/e5"
# eval and predict use the same default (cli_open_model)
"$BIN" eval --data fashion-mnist:test --n 2 --timesteps-subset 2 >"$T/ev" 2>"$T/e6"
check "eval without --model uses the shipped model" grep -q "^model: .*models/fmnist-small.safetensors" "$T/ev"
check "and says which file" grep -q "eval: no --model given, using .*models/fmnist-small.safetensors" "$T/e6"
"$BIN" predict --input "$T/x.npy" --t 0,999 --out "$T/shipped.npy" 2>"$T/e7"
check "predict without --model uses the shipped model" test "$(stat -c %s "$T/shipped.npy")" -eq $((128 + 2*784*4))
check "and says which file" grep -q "predict: no --model given, using .*models/fmnist-small.safetensors" "$T/e7"
"$BIN" eval --data fashion-mnistX >/dev/null 2>"$T/e8"
check "eval refuses --data fashion-mnistX (no dataset) for an image model" \
    grep -q "an image model needs image data (e.g. fashion-mnist:test), got 'fashion-mnistX'" "$T/e8"

finish cli_images
