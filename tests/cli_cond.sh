#!/usr/bin/env bash
# Class-conditional training and classifier-free guidance through the CLI, on a tiny U-Net over
# Fashion-MNIST: train --classes gives K + 1 class embeddings with the null class last, sampling a
# class with guidance is reproducible and differs from another class, --class all draws one grid row
# per class, the null class survives a diffusers export (and is unknown without diffuse's key), and
# the bad inputs fail with one message. Usage: cli_cond.sh PATH/TO/diffuse
. "$(dirname "$0")/lib.sh"
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    echo "FAIL: /usr/share/datasets/fashion-mnist is missing (apt-get install dataset-fashion-mnist)"; exit 1
fi
tiny=(--data fashion-mnist --base-channels 8 --mult 1,2 --res-blocks 1 --attn-res 14 --groups 4
      --batch 8 --grid-n 4 --seed 7 --threads 2)

"$BIN" train "${tiny[@]}" --classes --cond-drop 0.2 --warmup 0 --out "$T/c" --steps 3 2>"$T/c.log"
check "conditional train exits 0" test $? -eq 0
M="$T/c/model.safetensors"
"$BIN" info --model "$M" >"$T/info"
check "info: 10 classes, null class 10" grep -q "classes: 10 (class-conditional; null class 10)" "$T/info"
check "info: Fashion-MNIST's class names" grep -q "class 7: Sneaker" "$T/info"

s=(--model "$M" --n 3 --sampler ddim --steps 3 --threads 2)
"$BIN" sample "${s[@]}" --class 4 --guidance 3 --out "$T/g1.npy" 2>/dev/null
"$BIN" sample "${s[@]}" --class 4 --guidance 3 --batch 1 --threads 1 --out "$T/g2.npy" 2>/dev/null
check "guided samples reproducible across batch and threads" cmp -s "$T/g1.npy" "$T/g2.npy"
"$BIN" sample "${s[@]}" --class 5 --guidance 3 --out "$T/g3.npy" 2>/dev/null
check "another class gives other samples" bash -c "! cmp -s '$T/g1.npy' '$T/g3.npy'"
"$BIN" sample "${s[@]}" --class all --n 2 --guidance 2 --sampler dpm++2m --out "$T/all.png" 2>"$T/all.log"
check "class all: 20 samples" grep -q "wrote 20 samples" "$T/all.log"
# one row of 2 per class: 10 rows of 28 px with 2 px gaps
python_free_png_height=$(od -An -tu1 -j20 -N4 "$T/all.png" | awk '{print $1*16777216+$2*65536+$3*256+$4}')
check "class all: a grid of 10 rows (height $python_free_png_height)" test "$python_free_png_height" -eq $((10 * 28 + 11 * 2))

"$BIN" export --model "$M" --out "$T/dif" 2>/dev/null
"$BIN" sample --model "$T/dif" --n 3 --sampler ddim --steps 3 --class 4 --guidance 3 --out "$T/d1.npy" 2>/dev/null
check "a diffusers folder written by diffuse keeps the null class (same samples)" cmp -s "$T/g1.npy" "$T/d1.npy"
sed -i 's/"diffuse_null_class": 10, //' "$T/dif/unet/config.json"
expect_fail "foreign folder: guidance needs --null-class" "needs the model's null class.*--null-class" \
    "$BIN" sample --model "$T/dif" --n 3 --class 4 --guidance 3 --out "$T/x.png"
"$BIN" sample --model "$T/dif" --null-class 10 --n 3 --sampler ddim --steps 3 --class 4 --guidance 3 --out "$T/d2.npy" 2>/dev/null
check "--null-class 10 gives the same samples" cmp -s "$T/g1.npy" "$T/d2.npy"

"$BIN" sample "${s[@]}" --class Sneaker --guidance 3 --out "$T/g4.npy" 2>/dev/null
"$BIN" sample "${s[@]}" --class 7 --guidance 3 --out "$T/g5.npy" 2>/dev/null
check "--class by name: Sneaker is class 7" cmp -s "$T/g4.npy" "$T/g5.npy"

# an image folder with one subfolder per class (torchvision's ImageFolder): sorted names
"$BIN" sample "${s[@]}" --class 1 --out "$T/f/trousers/" 2>/dev/null
"$BIN" sample "${s[@]}" --class 0 --out "$T/f/shirts/" 2>/dev/null
"$BIN" train --data "folder:$T/f" --classes --preset fmnist-small --image-size 28 --base-channels 8 --mult 1,2 \
    --res-blocks 1 --attn-res 14 --groups 4 --batch 2 --grid-n 2 --steps 1 --out "$T/fm" 2>/dev/null
"$BIN" info --model "$T/fm/model.safetensors" >"$T/finfo"
check "folder classes: 2 classes, sorted (shirts, trousers)" bash -c "grep -q 'classes: 2 (class-conditional; null class 2)' '$T/finfo' && grep -q 'class 0: shirts' '$T/finfo' && grep -q 'class 1: trousers' '$T/finfo'"
mkdir -p "$T/one/only" "$T/empty/a" "$T/empty/b"
cp "$T/f/shirts/000000.png" "$T/one/only/" && cp "$T/f/shirts/000000.png" "$T/empty/a/"
expect_fail "a folder of one class" "one class subfolder \(only\); a labelled folder needs at least 2" \
    "$BIN" train --data "folder:$T/one" --classes --image-size 28 --steps 1 --out "$T/t"
expect_fail "an empty class" "class 'b' has no \.png, \.jpg or \.jpeg files" \
    "$BIN" train --data "folder:$T/empty" --classes --image-size 28 --steps 1 --out "$T/t"

# the 2-D MLP conditions too: 8gaussians' modes are its classes (mode k at angle k pi/4, radius 2)
"$BIN" train --data toy:8gaussians --classes --steps 600 --plot-n 50 --seed 3 --threads 2 --out "$T/toy" 2>/dev/null
"$BIN" sample --model "$T/toy/model.safetensors" --class 2 --guidance 2 --n 300 --sampler ddim --steps 20 \
    --out "$T/toy2.csv" 2>/dev/null
mean=$(awk -F, 'NR > 1 {n++; x += $1; y += $2} END {printf "%.3f %.3f", x / n, y / n}' "$T/toy2.csv")
# measured (0.016, 2.080) after 600 steps; a class that did nothing would give the circle's centre (0, 0)
check "toy class 2 samples around the mode (0, 2): mean $mean" \
    awk -v m="$mean" 'BEGIN {split(m, v, " "); exit !(v[1] > -0.3 && v[1] < 0.3 && v[2] > 1.7 && v[2] < 2.3)}'
expect_fail "--classes on unlabelled 2-D data" "toy:swissroll has no classes" \
    "$BIN" train --data toy:swissroll --classes --steps 2 --out "$T/t"

# a CSV file's label column: two clusters, (-2, 0) labelled 0 and (2, 1) labelled 1
awk 'BEGIN {print "x,y,label"; srand(7); for (i = 0; i < 400; i++) {k = i % 2;
    printf "%.4f,%.4f,%d\n", (k ? 2 : -2) + 0.2 * (rand() - 0.5), k + 0.2 * (rand() - 0.5), k}}' > "$T/lab.csv"
"$BIN" train --data "csv:$T/lab.csv" --classes --steps 400 --plot-n 50 --seed 3 --threads 2 --out "$T/csv" 2>/dev/null
"$BIN" sample --model "$T/csv/model.safetensors" --class 1 --guidance 2 --n 200 --sampler ddim --steps 20 \
    --out "$T/csv1.csv" 2>/dev/null
mean=$(awk -F, 'NR > 1 {n++; x += $1; y += $2} END {printf "%.3f %.3f", x / n, y / n}' "$T/csv1.csv")
check "csv label 1 samples around its cluster (2, 1): mean $mean" \
    awk -v m="$mean" 'BEGIN {split(m, v, " "); exit !(v[1] > 1.6 && v[1] < 2.4 && v[2] > 0.6 && v[2] < 1.4)}'
printf 'x,y,label\n0,0,0\n1,1\n' > "$T/mixed.csv"
expect_fail "a csv row without the label the first row has" "mixed.csv:3: expected 'x,y,label'" \
    "$BIN" train --data "csv:$T/mixed.csv" --classes --steps 2 --out "$T/t"
printf '0,0,0\n1,1,2\n' > "$T/gap.csv"
expect_fail "a csv label column with a class missing" "class 1 has no points" \
    "$BIN" train --data "csv:$T/gap.csv" --classes --steps 2 --out "$T/t"
printf '0,0\n1,1\n' > "$T/nolab.csv"
expect_fail "--classes on a csv without labels" "has no classes" \
    "$BIN" train --data "csv:$T/nolab.csv" --classes --steps 2 --out "$T/t"

expect_fail "class out of range" "class 10 is out of range: the model's classes are 0\.\.9" \
    "$BIN" sample --model "$M" --class 10 --out "$T/x.png"
expect_fail "class not a number or name" "--class must be a class index, a class name of the model or 'all' \(got 'x'\)" \
    "$BIN" sample --model "$M" --class x --out "$T/x.png"
expect_fail "negative guidance" "guidance scale must be finite and >= 0 \(got -1\)" \
    "$BIN" sample --model "$M" --class 1 --guidance -1 --out "$T/x.png"
expect_fail "guidance without a class" "--guidance needs --class" "$BIN" sample --model "$M" --guidance 2 --out "$T/x.png"
expect_fail "class on an unconditional model" "is not a class-conditional model" \
    "$BIN" sample --model "$(dirname "$BIN")/../models/fmnist-small.safetensors" --class 1 --out "$T/x.png"
expect_fail "--cond-drop out of range" "--cond-drop must be in \[0, 1\] \(got 1\.5\)" \
    "$BIN" train "${tiny[@]}" --classes --cond-drop 1.5 --steps 2 --out "$T/t"
check "nothing written by the refused runs" test ! -e "$T/x.png" -a ! -e "$T/t"
finish cli_cond
