#!/usr/bin/env bash
# Full disks and unwritable places: writing a checkpoint, samples or a log where it cannot go fails
# with one clear message and a non-zero exit, and leaves the previous checkpoint intact.
# Uses a small tmpfs when this machine allows mounting one (root in CI); else only the /dev/full
# and missing-directory cases. Usage: cli_disk.sh PATH/TO/diffuse
. "$(dirname "$0")/lib.sh"
MNT="$T/small"
cleanup() { umount "$MNT" 2>/dev/null; rm -rf "$T"; } # replaces lib.sh's: unmount before removing
small=(--data toy:moons --batch 16 --hidden 16 --layers 1 --plot-n 20 --seed 2 --threads 1)
"$BIN" train "${small[@]}" --out "$T/a" --steps 30 2>/dev/null
M="$T/a/model.safetensors"

"$BIN" sample --model "$M" --n 10 --out /dev/full/x.csv 2>"$T/e1"
check "sample into a non-directory fails" test $? -ne 0
check "... with a message naming the path" grep -q "/dev/full/x.csv" "$T/e1"
"$BIN" sample --model "$M" --n 10 --out "$T/no/such/dir/x.csv" 2>"$T/e2"
check "sample into a missing directory fails clearly" grep -q "cannot write $T/no/such/dir/x.csv" "$T/e2"

mkdir -p "$MNT"
if mount -t tmpfs -o size=160k tmpfs "$MNT" 2>/dev/null; then
    "$BIN" train "${small[@]}" --out "$MNT/run" --steps 20 --ckpt-every 10 2>/dev/null
    check "training fits on the small disk" test -s "$MNT/run/checkpoint.safetensors"
    cp "$MNT/run/checkpoint.safetensors" "$T/good.safetensors"
    # fill the disk, leaving a few kilobytes: the next checkpoint cannot be written
    dd if=/dev/zero of="$MNT/filler" bs=1k count=1000 2>/dev/null
    "$BIN" train "${small[@]}" --out "$MNT/run" --steps 40 --ckpt-every 10 --resume 2>"$T/e3"
    rc=$?
    check "a full disk stops training with an error" test $rc -ne 0
    check "... that says the disk is full" grep -q "No space left on device" "$T/e3"
    check "... on one line" test "$(grep -c "diffuse train:" "$T/e3")" -eq 1
    check "the previous checkpoint is intact" cmp -s "$T/good.safetensors" "$MNT/run/checkpoint.safetensors"
    check "no temporary file is left" bash -c "! ls '$MNT'/run/*.tmp.* >/dev/null 2>&1"
    "$BIN" sample --model "$M" --n 5000 --out "$MNT/big.csv" 2>"$T/e4"
    check "samples to a full disk: error" grep -q "No space left on device" "$T/e4"
    check "... and no partial file" test ! -e "$MNT/big.csv"
    rm -f "$MNT/filler"
    "$BIN" train "${small[@]}" --out "$MNT/run" --steps 40 --ckpt-every 10 --resume 2>/dev/null
    check "after freeing space, resume completes" test $? -eq 0
else
    echo "note: cannot mount a tmpfs here; the full-disk cases were skipped"
fi

finish cli_disk
