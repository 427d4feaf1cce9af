#!/usr/bin/env bash
# End to end on 2-D data through the CLI: train writes its files; sampling reproduces the same
# points for the same seed, whatever the thread count or batch size; a run stopped and resumed
# ends with exactly the same model as an uninterrupted one. Usage: cli_toy.sh PATH/TO/diffuse
. "$(dirname "$0")/lib.sh"
common=(--data toy:swissroll --batch 64 --hidden 32 --layers 2 --plot-n 200 --seed 3)

"$BIN" train "${common[@]}" --out "$T/a" --steps 200 2>"$T/train.log"
check "train exits 0" test $? -eq 0
for f in model.safetensors checkpoint.safetensors loss.csv loss.png samples.png; do
    check "train wrote $f" test -s "$T/a/$f"
done
check "loss log has 200 rows" test "$(($(wc -l < "$T/a/loss.csv") - 1))" -eq 200

"$BIN" sample --model "$T/a/model.safetensors" --n 300 --out "$T/s1.csv" --seed 5 --threads 1 2>/dev/null
"$BIN" sample --model "$T/a/model.safetensors" --n 300 --out "$T/s2.csv" --seed 5 --threads 2 --batch 7 2>/dev/null
"$BIN" sample --model "$T/a/model.safetensors" --n 300 --out "$T/s3.csv" --seed 6 2>/dev/null
check "same seed, same samples (1 vs 2 threads, batch 256 vs 7)" cmp -s "$T/s1.csv" "$T/s2.csv"
check "another seed, other samples" bash -c "! cmp -s '$T/s1.csv' '$T/s3.csv'"
check "300 samples written" test "$(($(wc -l < "$T/s1.csv") - 1))" -eq 300
"$BIN" sample --model "$T/a/model.safetensors" --n 50 --out "$T/d.csv" --sampler ddim --steps 20 2>/dev/null
check "ddim sampling" test -s "$T/d.csv"

# Resume: 120 steps, then resume to 200, must equal the straight 200-step run bit for bit.
"$BIN" train "${common[@]}" --out "$T/b" --steps 120 --ckpt-every 50 2>/dev/null
"$BIN" train "${common[@]}" --out "$T/b" --steps 200 --resume 2>/dev/null
check "resumed model equals uninterrupted model" cmp -s "$T/a/model.safetensors" "$T/b/model.safetensors"
check "resumed loss log equals uninterrupted log" \
    cmp -s <(cut -d, -f1-3 "$T/a/loss.csv") <(cut -d, -f1-3 "$T/b/loss.csv")

"$BIN" info --model "$T/a/model.safetensors" > "$T/info.txt" 2>&1
check "info prints the config" grep -q "prediction: eps" "$T/info.txt"
check "info --help" "$BIN" info --help

finish cli_toy
