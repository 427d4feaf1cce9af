#!/usr/bin/env bash
# Data-parallel training under mpirun (src/dist/): -np 2 and -np 3 with one thread each give the
# loss of the one-process run at every step (within float summation order), on 2-D points and on
# a tiny U-Net with dropout; a checkpoint written with one process count resumes with another; a
# batch the process count does not divide is one message; only rank 0 writes files; the all-reduce's
# cost is printed once; Ctrl-C to mpirun (and SIGTERM to the ranks) stops every rank at one step with
# one checkpoint, which resumes; sample and eval split over the ranks and give one process's output.
# Skipped (77) without mpirun or in a build without MPI. Usage: cli_mpi.sh PATH/TO/diffuse
. "$(dirname "$0")/lib.sh"
MPIRUN="${DIFFUSE_MPIEXEC:-$(command -v mpirun || true)}"
if [ -z "$MPIRUN" ] || [ ! -x "$MPIRUN" ]; then echo "cli_mpi: no mpirun: skipped"; exit 77; fi
if ! grep -aq "OMPI_COMM_WORLD_SIZE" "$BIN"; then echo "cli_mpi: diffuse built without MPI: skipped"; exit 77; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# one machine, no network probing; quiet about the missing high-speed fabrics
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_base_warn_component_unused=0
# Under AddressSanitizer (.ci/sanitize): Open MPI keeps allocations it never frees, in components it
# has unloaded by exit, so LeakSanitizer cannot tell them from ours and fails every rank. Leak checks
# stay on for the same training code in the one-process tests; ASan's memory errors stay on here.
if [ -n "${ASAN_OPTIONS:-}" ]; then export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"; fi
run() { local np="$1"; shift; "$MPIRUN" --oversubscribe -np "$np" "$BIN" "$@"; }

# same_loss A B: the loss and gradient-norm columns of two loss.csv agree row by row within a relative
# 1e-4. loss.csv prints 6 significant digits (a relative step of up to 1e-5); the ranks' partial
# sums reorder the float additions of the batch reduction, which moves the weights by about 1e-7
# relative per step, measured at 3.5e-6 in the printed loss after 300 steps. A wrong sample split
# or dropout mask changes the loss by 1e-2 or more from step 1.
same_loss() {
    [ "$(wc -l < "$1")" -eq "$(wc -l < "$2")" ] && [ "$(wc -l < "$1")" -gt 1 ] &&
        paste -d, "$1" "$2" | awk -F, 'function rel(a, b) { d = a - b; if (d < 0) d = -d; s = (a < 0 ? -a : a);
            return s > 0 ? d / s : d }
            NR > 1 { if ($1 != $6) bad = 1; r = rel($2, $7); g = rel($3, $8); if (r > m) m = r; if (g > m) m = g }
            END { printf "    largest relative difference %.3g\n", m + 0; exit (bad || m > 1e-4) }'
}

toy=(--data toy:moons --batch 12 --hidden 32 --layers 2 --plot-n 50 --seed 5 --threads 1)
run 1 train "${toy[@]}" --steps 60 --out "$T/t1" 2>"$T/t1.log"
check "toy -np 1 trains" test -s "$T/t1/model.safetensors"
for np in 2 3; do
    run $np train "${toy[@]}" --steps 60 --out "$T/t$np" 2>"$T/t$np.log"
    check "toy -np $np exits 0" test $? -eq 0
    check "toy -np $np: same loss as one process" same_loss "$T/t1/loss.csv" "$T/t$np/loss.csv"
    check "toy -np $np: progress printed once" test "$(grep -c '^wrote' "$T/t$np.log")" -eq 1
    # the communication cost, once, by rank 0: the all-reduce of the 5.3 k gradient floats
    check "toy -np $np: $(grep -o '^gradient all-reduce: [0-9.]* ms a step' "$T/t$np.log")" \
        test "$(grep -cE "^gradient all-reduce: [0-9]+\.[0-9]{3} ms a step( \([0-9.]+% of a step\))?, [0-9]+ floats \([0-9.]+ MB\) over $np processes; before it [0-9]+\.[0-9]{3} ms waiting" "$T/t$np.log")" -eq 1
done
check "one process: no all-reduce reported" test "$(grep -c 'all-reduce' "$T/t1.log")" -eq 0

# Only rank 0 writes: the other ranks' files would appear as duplicates or temporaries.
check "only rank 0 wrote files" test "$(ls "$T/t3" | sort | tr '\n' ' ')" = \
    "checkpoint.safetensors loss.csv loss.png model.safetensors samples.png "

# Resume across a change of process count: 2 then 1, 1 then 3 give the straight run.
run 2 train "${toy[@]}" --steps 30 --out "$T/r21" 2>/dev/null
run 1 train "${toy[@]}" --steps 60 --out "$T/r21" --resume 2>/dev/null
check "checkpoint of -np 2 resumes with -np 1" same_loss "$T/t1/loss.csv" "$T/r21/loss.csv"
run 1 train "${toy[@]}" --steps 30 --out "$T/r13" 2>/dev/null
run 3 train "${toy[@]}" --steps 60 --out "$T/r13" --resume 2>/dev/null
check "checkpoint of -np 1 resumes with -np 3" same_loss "$T/t1/loss.csv" "$T/r13/loss.csv"

# Ctrl-C under mpirun. Open MPI 4.1's mpirun does not pass SIGINT on: a grace period after it
# (odls_base_sigkill_timeout, 1 s) it sends SIGTERM to every rank, and SIGKILL a grace later or as
# soon as one rank exits. The ranks agree on the stop step (an allreduce of the stop flag every
# step), rank 0 writes the one checkpoint, and they leave together (a barrier) with status 130,
# without MPI_Finalize, which would wait ~2 s for mpirun's ending PMIx server and so meet SIGKILL.
# mpirun itself then exits 1, whatever the ranks return (its status for a job it was told to end).
# stop_run NP DIR SIGNAL WHO [TRACE...]: trains until 20 steps are logged, then sends SIGNAL to WHO
# (mpirun, or the ranks themselves as a batch system does); mpirun's status in $rc, the stop step in
# $S. TRACE: a command (strace) that runs mpirun and records how its children end.
stop_run() {
    local np="$1" dir="$2" sig="$3" who="$4" i mp
    shift 4
    "$@" "$MPIRUN" --oversubscribe -np "$np" "$BIN" train "${toy[@]}" --steps 100000000 --ckpt-every 0 --out "$dir" \
        >/dev/null 2>"$dir.err" &
    local pid=$!
    for i in $(seq 300); do [ "$(cat "$dir/loss.csv" 2>/dev/null | wc -l)" -gt 20 ] && break; sleep 0.1; done
    mp=$pid
    [ $# -gt 0 ] && mp=$(pgrep -P $pid)  # mpirun under the tracer
    if [ "$who" = mpirun ]; then kill -"$sig" $mp; else kill -"$sig" $(pgrep -P $mp); fi
    wait $pid
    rc=$?
    S=$(grep -c "stopped at step" "$dir.err")
    [ "$S" = 1 ] && S=$(sed -n 's/.*stopped at step \([0-9]*\); checkpoint written.*/\1/p' "$dir.err")
}
# ranks_ended TRACE NP: from strace's record, how each rank ended. The first to end exits 130 by
# itself; the others too, or are killed by mpirun in the moment after (it answers a rank's exit by
# SIGKILL to the rest; they are past their last barrier then, all files written). A rank killed
# before any exited (stuck in MPI_Finalize, say, as before) fails.
ranks_ended() {
    awk -v np="$2" '$2 ~ /^execve\("[^"]*\/diffuse"/ { r[$1] = 1 }
        $2 == "+++" && ($1 in r) { n++; if ($3 == "exited" && $5 == 130) ok++; else if ($3 == "killed" && ok > 0) k++; else bad = 1 }
        END { printf "    %d ranks: %d exited with 130, %d killed after the first\n", n, ok, k; exit bad || n != np || ok == 0 }' "$1"
}
# stopped_cleanly DIR: one stop message, the checkpoint at its step, the log up to it, rank 0's
# files alone and complete (loss.png is its last: no rank left before it was written; the sample
# picture is skipped under mpirun, it would outlast the grace), no temporaries.
stopped_cleanly() {
    [ -n "$S" ] && [ "$S" -gt 20 ] 2>/dev/null &&
        "$BIN" info --model "$1/checkpoint.safetensors" 2>/dev/null | grep -q "^trained steps: $S$" &&
        [ "$(awk -F, 'END { print $1 }' "$1/loss.csv")" = "$S" ] &&
        [ "$(ls "$1" | tr '\n' ' ')" = "checkpoint.safetensors loss.csv loss.png model.safetensors " ] ||
        { echo "    S=$S, files: $(ls "$1" | tr '\n' ' '), stderr: $(grep -v '^train' "$1.err" | tail -3)"; false; }
}
trace=()
if command -v strace >/dev/null && strace -f -o /dev/null true 2>/dev/null; then
    trace=(strace -f -o "$T/c3.trace" -e trace=execve,exit_group -e signal=SIGKILL)  # SIGKILL: its "killed by" lines
fi
stop_run 3 "$T/c3" INT mpirun "${trace[@]}"
check "Ctrl-C to mpirun -np 3: mpirun exits 1 (Open MPI 4.1's own status; the ranks 130), rc $rc" \
    test "$rc" -eq 1 -o "$rc" -eq 130  # 130: a launcher that passes SIGINT on and the ranks' status out
check "Ctrl-C to mpirun -np 3: stopped at step $S, one checkpoint, rank 0's files complete" stopped_cleanly "$T/c3"
if [ ${#trace[@]} -gt 0 ]; then
    check "Ctrl-C to mpirun -np 3: the ranks exit 130 (strace)" ranks_ended "$T/c3.trace" 3
else
    echo "cli_mpi: no strace (or no ptrace) here: how the ranks ended is not checked"
fi
# the checkpoint resumes: the run goes on to S + 20 as a run never stopped does, to the bit (the
# same process count sums the gradients in the same order)
if [ -n "$S" ] && [ "$S" -gt 0 ] 2>/dev/null; then
    run 3 train "${toy[@]}" --steps $((S + 20)) --ckpt-every 0 --out "$T/c3" --resume 2>"$T/c3r.err"
    check "the stopped run resumes at step $S" grep -q "^resuming $T/c3 at step $S$" "$T/c3r.err"
    run 3 train "${toy[@]}" --steps $((S + 20)) --ckpt-every 0 --out "$T/c3s" 2>/dev/null
    check "stopped and resumed: the loss log of a straight run to step $((S + 20))" \
        cmp -s <(cut -d, -f1-3 "$T/c3s/loss.csv") <(cut -d, -f1-3 "$T/c3/loss.csv")
fi
# SIGTERM to the ranks themselves (as a batch system sends it): the same stop, and mpirun passes on
# the ranks' 130
stop_run 2 "$T/c2" TERM ranks
check "SIGTERM to the ranks of -np 2: mpirun exits 130: rc $rc" test "$rc" -eq 130
check "SIGTERM to the ranks of -np 2: stopped at step $S, one checkpoint, rank 0's files complete" stopped_cleanly "$T/c2"

# A batch the processes cannot share equally: one message (mpirun adds its own lines after it).
run 3 train "${toy[@]}" --batch 10 --steps 5 --out "$T/bad" >"$T/out" 2>"$T/err"
rc=$?
if [ $rc -ne 0 ] && [ "$(grep -c '^diffuse' "$T/err")" -eq 1 ] &&
    grep -q "^diffuse train: --batch 10 is not divisible by the 3 processes" "$T/err" && [ ! -e "$T/bad" ]; then
    ok "indivisible batch refused: $(grep '^diffuse' "$T/err")"
else
    bad "indivisible batch: rc=$rc, stderr: $(cat "$T/err")"
fi

# Sampling under mpirun: each rank draws its share by global index, rank 0 gathers: the same file
# as one process writes, with the ancestral sampler (noise keyed by sample) and with dpm++2m.
"$BIN" sample --model "$T/t1/model.safetensors" --n 101 --threads 1 --out "$T/s1.csv" 2>/dev/null
run 3 sample --model "$T/t1/model.safetensors" --n 101 --threads 1 --out "$T/s3.csv" >/dev/null 2>&1
check "sample -np 3: the same 101 samples as one process" cmp -s "$T/s1.csv" "$T/s3.csv"
"$BIN" sample --model "$T/t1/model.safetensors" --n 7 --sampler dpm++2m --steps 8 --threads 1 --out "$T/d1.csv" 2>/dev/null
run 2 sample --model "$T/t1/model.safetensors" --n 7 --sampler dpm++2m --steps 8 --threads 1 --out "$T/d2.csv" >/dev/null 2>&1
check "sample dpm++2m -np 2: the same samples" cmp -s "$T/d1.csv" "$T/d2.csv"

# eval splits its samples over the ranks, contiguous shares in rank order (5 images: 2+3 on 2 ranks,
# 1+2+2 on 3), the noise keyed by the global sample index; the per-sample terms come back exactly
# and the per-t sums (of L_{t-1} and its square) are added over the ranks. Tolerance: none for the
# report. Every printed figure (bits/dim, its standard error, prior, decoder and KL sum) is a mean
# over the per-sample terms, which are the same doubles as in one process (an item's network output
# does not depend on its batch: --batch 1, 7 and 64 print the same at every CPU level), summed in
# the same order; only the per-t sums behind --csv are added in another order (relative 1e-16 in
# double), far below the CSV's 9 digits. A wrong split (an image twice, another image's noise)
# moves bits/dim by 1e-2 or more.
E=(eval --model "$(dirname "$BIN")/../models/fmnist-small.safetensors" --data fashion-mnist:test --n 5
   --timesteps-subset 6 --threads 1)
if "$BIN" "${E[@]}" --csv "$T/e0.csv" >"$T/e0.txt" 2>"$T/e0.err"; then
    echo "    one process: $(grep "bits/dim = " "$T/e0.txt")"
    for np in 1 2 3; do
        mkdir -p "$T/e$np"
        run $np "${E[@]}" --csv "$T/e$np/e.csv" --plot "$T/e$np/e.png" >"$T/e$np.txt" 2>"$T/e$np.err"
        check "eval -np $np exits 0" test $? -eq 0
        check "eval -np $np: the report of one process, every figure" cmp -s "$T/e0.txt" "$T/e$np.txt"
        check "eval -np $np: the per-t CSV of one process" cmp -s "$T/e0.csv" "$T/e$np/e.csv"
        check "eval -np $np: printed once, files by rank 0 alone" bash -c "[ \"\$(grep -c 'bits/dim = ' '$T/e$np.txt')\" = 1 ] &&
            [ \"\$(grep -c '^wrote' '$T/e$np.err')\" = 2 ] && [ \"\$(ls '$T/e$np' | tr '\n' ' ')\" = 'e.csv e.png ' ]"
    done
    run 3 eval --model "$(dirname "$BIN")/../models/fmnist-small.safetensors" --data fashion-mnist:test --n 2 \
        --threads 1 >/dev/null 2>"$T/err"
    rc=$?
    check "eval: 2 samples on 3 processes refused (rc $rc)" bash -c "[ $rc -ne 0 ] && grep -q '2 samples cannot be shared by 3 processes' '$T/err'"
else
    echo "cli_mpi: no Fashion-MNIST here ($(tail -1 "$T/e0.err")): the eval checks skipped"
fi

# Ranks that run different commands (here: another seed on rank 1) are refused before any work,
# the differing rank naming both command lines.
"$MPIRUN" --oversubscribe -np 1 "$BIN" train "${toy[@]}" --batch 12 --steps 2 --seed 1 --out "$T/dis" : \
    -np 1 "$BIN" train "${toy[@]}" --batch 12 --steps 2 --seed 2 --out "$T/dis" >"$T/out" 2>"$T/err"
rc=$?
if [ $rc -ne 0 ] && grep -q "^diffuse: rank 1 runs .*--seed 2.* but rank 0 runs .*--seed 1" "$T/err" && [ ! -e "$T/dis" ]; then
    ok "ranks with different commands refused: $(grep '^diffuse' "$T/err" | cut -c1-80)..."
else
    bad "different commands: rc=$rc, stderr: $(cat "$T/err")"
fi

# A tiny U-Net with dropout (cli_images.sh's flags): the masks follow the sample's global index. Strong
# dropout and a fast start make a wrong mask visible: every rank using the masks of samples 0.. moved
# the loss by 3.5e-2 relative; the right ones agree with one process to the printed digits.
tiny=(--data fashion-mnist --base-channels 8 --mult 1,2 --res-blocks 1 --attn-res 14 --groups 4 --dropout 0.9
      --warmup 1 --lr 0.01 --batch 6 --grid-n 4 --seed 7 --threads 1)
if "$BIN" train "${tiny[@]}" --out "$T/u1" --steps 4 2>"$T/u1.log"; then
    for np in 2 3; do
        run $np train "${tiny[@]}" --out "$T/u$np" --steps 4 2>/dev/null
        check "U-Net with dropout -np $np: same loss as one process" same_loss "$T/u1/loss.csv" "$T/u$np/loss.csv"
    done
else
    echo "cli_mpi: no Fashion-MNIST here ($(tail -1 "$T/u1.log")): the U-Net checks skipped"
fi

finish cli_mpi
