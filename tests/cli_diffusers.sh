#!/usr/bin/env bash
# `diffuse export` and diffusers folders from the command line. Usage: cli_diffusers.sh PATH/TO/diffuse
#
# Input: the committed pipeline folder data/diffusers_tiny (written by `test_diffusers --make-data`
# from the unet_tiny_noattn PyTorch fixture: legacy attention names, F16 weights, a DDPMScheduler;
# test_diffusers checks that it computes the fixture's output). No python needed.
# Checked: export writes a complete DDPMPipeline folder with the scheduler carried over; exporting
# the export again gives byte-identical files (F32 weights survive exactly); --raw equals EMA for a
# diffusers input; info reads the exported folder; errors are one clear line, non-zero, and leave
# no model_index.json behind.
. "$(dirname "$0")/lib.sh"
DATA=data/diffusers_tiny

# 1. export a diffusers folder (F16, legacy names) -> F32 pipeline folder with current names
if "$BIN" export --model "$DATA" --out "$T/a" 2>"$T/err"; then ok "export $DATA"; else bad "export $DATA: $(cat "$T/err")"; fi
for f in model_index.json unet/config.json unet/diffusion_pytorch_model.safetensors scheduler/scheduler_config.json; do
    if [ -s "$T/a/$f" ]; then ok "wrote $f"; else bad "missing $T/a/$f"; fi
done
grep -q '"_class_name": "DDPMPipeline"' "$T/a/model_index.json" && ok "model_index names DDPMPipeline" || bad "model_index.json: $(cat "$T/a/model_index.json")"
grep -q '"variance_type": "fixed_large"' "$T/a/scheduler/scheduler_config.json" &&
    grep -q '"clip_sample": true' "$T/a/scheduler/scheduler_config.json" && ok "scheduler carried over (fixed_large, clip_sample)" ||
    bad "scheduler_config.json: $(cat "$T/a/scheduler/scheduler_config.json")"
grep -q '"sample_size": 8' "$T/a/unet/config.json" && ok "unet config" || bad "unet/config.json: $(cat "$T/a/unet/config.json")"
W="$T/a/unet/diffusion_pytorch_model.safetensors"
if grep -aq '"__metadata__":{"format":"pt"}' "$W" && grep -aq '"mid_block.attentions.0.to_q.weight":{"dtype":"F32"' "$W" &&
    ! grep -aq '"mid_block.attentions.0.query.weight"' "$W"; then
    ok "weights: F32, current attention names, format pt"
else
    bad "weights header: $(head -c 300 "$W" | tail -c 290)"
fi

# 2. export of the export: byte-identical files; --raw = EMA for a diffusers input
"$BIN" export --model "$T/a" --out "$T/b" 2>/dev/null || bad "re-export failed"
"$BIN" export --model "$T/a" --out "$T/c" --raw 2>/dev/null || bad "re-export --raw failed"
for f in model_index.json unet/config.json unet/diffusion_pytorch_model.safetensors scheduler/scheduler_config.json; do
    if cmp -s "$T/a/$f" "$T/b/$f" && cmp -s "$T/a/$f" "$T/c/$f"; then ok "round trip: $f identical"; else bad "round trip: $f differs"; fi
done

# 3. info reads a folder (every command opens models with df_model_open_ex, through cli_open_model)
if "$BIN" info --model "$T/a" >"$T/info" 2>"$T/err"; then
    grep -q "unet 1x8x8" "$T/info" && ok "info on a diffusers folder" || bad "info output: $(cat "$T/info")"
else
    bad "info on a diffusers folder: $(cat "$T/err")"
fi

# 4. errors
expect_fail "no --model" "--model is required" "$BIN" export --out "$T/x"
expect_fail "no --out" "--out is required" "$BIN" export --model "$DATA"
expect_fail "missing model" "cannot open .*nothing" "$BIN" export --model "$T/nothing" --out "$T/x"
mkdir -p "$T/bad"
cp -r "$DATA/." "$T/bad/"
sed -i 's/"act_fn": "silu"/"act_fn": "silu", "foo": 1/' "$T/bad/unet/config.json"
expect_fail "unknown config field" "config.json: unsupported field 'foo' = 1" "$BIN" export --model "$T/bad" --out "$T/y"
[ -e "$T/y/model_index.json" ] && bad "a refused export left $T/y/model_index.json" || ok "refused export wrote nothing"
cp -r "$DATA/." "$T/bad/"
printf '{"_class_name": "DDPMScheduler", "variance_type": "learned_range"}\n' >"$T/bad/scheduler/scheduler_config.json"
expect_fail "unsupported scheduler" "scheduler_config.json: unsupported field 'variance_type'" "$BIN" export --model "$T/bad" --out "$T/y"
touch "$T/file"
expect_fail "output is a file" "not a directory|cannot create" "$BIN" export --model "$DATA" --out "$T/file"

finish cli_diffusers
