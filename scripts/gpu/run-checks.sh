#!/usr/bin/env bash
# fastdet's GPU check, from the bundle `make gpu-bundle` writes (dist/fastdet-gpu/): for an
# x86-64 Linux machine with an NVIDIA GPU and Python's torch 2.11 (CUDA) installed, without Rust
# or internet. Everything it prints also goes to LOG_DIR/run-checks.log.
#
#   ./run-checks.sh LOG_DIR            # PYTHON=/path/to/python to choose the torch
#
# Steps (each with a time limit; about 5 minutes in all on an H200):
#   1. device: the device fastdet picks (CUDA must be chosen where torch sees a GPU) and a
#      product computed there;
#   2. training step of ResNet34 + the detection head, batch 64 at 224, fp32 and mixed
#      precision, fastdet beside PyTorch on this machine: images/s and the ratio; then the same
#      for lesson 9's SSD (ResNet34 + SSD_MultiHead, 189 anchors), PyTorch running the notebook's
#      ssd_loss (a loop over the images, lesson_ssd.py) beside fastdet's batched loss;
#   3. the synthetic SSD trained to its mAP: time per epoch and VOC07 mAP;
#   4. `fastdet train` on the bundled sample (stage 1, then --resume for stage 2), `predict`
#      with the report, and `eval`.
# Without a GPU (a CPU check of the bundle itself) steps 2 and 3 run small versions and the
# GPU-only parts (mixed precision, the full synthetic training) are skipped with a message.
# Exit status 0 when no step failed.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log_dir=${1:?usage: run-checks.sh LOG_DIR}
mkdir -p "$log_dir"
log_dir=$(cd "$log_dir" && pwd)
exec > >(tee "$log_dir/run-checks.log") 2>&1
started=$(date +%s)
say() { printf '[run-checks %4ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }
results=()
record() { results+=("$(printf '%-5s %-28s %4ss  %s' "$1" "$2" "$3" "${4:-}")"); say "$1: $2 ${4:-}"; }

# Python with torch: $PYTHON, the machine's /opt/torch venv, or python3 on PATH.
py=""
for c in "${PYTHON:-}" /opt/torch/.venv/bin/python python3 python; do
  if [ -n "$c" ] && "$c" -c 'import torch' >/dev/null 2>&1; then py=$c; break; fi
done
[ -n "$py" ] || { say "FAIL: no python that imports torch (set PYTHON)"; exit 1; }
read -r torch_ver torch_lib gpu gpu_name < <("$py" -c 'import os, torch
n = torch.cuda.get_device_name(0).replace(" ", "_") if torch.cuda.is_available() else "-"
print(torch.__version__, os.path.join(os.path.dirname(torch.__file__), "lib"), int(torch.cuda.is_available()), n)')
built_for=$(cat "$here/BUILT_FOR_TORCH")
say "bundle $(cat "$here/VERSION"), built for torch $built_for; python $py imports torch $torch_ver (GPU: $gpu_name)"
case "$torch_ver" in
  "$built_for"*) ;;
  *) say "FAIL: this bundle is built against torch $built_for; $py has $torch_ver"; exit 1 ;;
esac
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FASTDET_SAMPLE="$here/data/coco128-voc" FASTDET_DATA="$here/data/coco128-voc" FASTDET_CACHE="$log_dir/cache"
bin="$here/bin"

# 1. device ----------------------------------------------------------------------------------
t0=$(date +%s)
out=$(timeout 120 "$bin/fastdet" device 2>&1); rc=$?
echo "$out"
if [ $rc -ne 0 ]; then record FAIL device $(( $(date +%s) - t0 )) "fastdet device exited $rc"
elif [ "$gpu" = 1 ] && ! grep -q '^device: cuda' <<<"$out"; then record FAIL device $(( $(date +%s) - t0 )) "torch sees a GPU but fastdet picked: $(head -1 <<<"$out")"
else record PASS device $(( $(date +%s) - t0 )) "$(head -1 <<<"$out")"; fi

# 2. training step beside PyTorch -------------------------------------------------------------
t0=$(date +%s)
if [ "$gpu" = 1 ]; then sizes=(--bs 64 --sz 224 --warmup 5 --steps 30); modes=(fp32 amp)
else sizes=(--bs 4 --sz 64 --warmup 1 --steps 2); modes=(fp32); say "no GPU: training step at batch 4, 64 px; mixed precision skipped (GPU-only: autocast is CUDA's)"; fi
step_ok=1
declare -A ips
# The SSD's anchors are the lesson's 189 at 224 px: without a GPU, batch 2 at 224 instead.
if [ "$gpu" = 1 ]; then ssd_sizes=("${sizes[@]}"); else ssd_sizes=(--bs 2 --sz 224 --warmup 1 --steps 1); fi
for head in detection ssd; do
  for mode in "${modes[@]}"; do
    flag=(--head "$head"); [ "$mode" = amp ] && flag+=(--amp)
    hs=("${sizes[@]}"); [ "$head" = ssd ] && hs=("${ssd_sizes[@]}")
    for fw in fastdet pytorch; do
      if [ $fw = fastdet ]; then cmd=("$bin/train_step" "${hs[@]}" "${flag[@]}"); else cmd=("$py" "$here/train_step_peer.py" "${hs[@]}" "${flag[@]}"); fi
      res=$(timeout 180 "${cmd[@]}" 2>&1); rc=$?
      line=$(grep '^RESULT ' <<<"$res" | tail -1)
      if [ $rc -ne 0 ] || [ -z "$line" ]; then echo "$res" | tail -20; step_ok=0; say "$fw $head $mode failed (exit $rc)"; continue; fi
      echo "$fw $head $mode: ${line#RESULT }"
      ips[$fw-$head-$mode]=$("$py" -c 'import json,sys; print(round(json.loads(sys.argv[1][7:])["img_per_s"], 1))' "$line")
    done
  done
done
echo
printf '%-10s %-6s %14s %14s %8s\n' head mode "fastdet img/s" "PyTorch img/s" ratio
for head in detection ssd; do
  for mode in "${modes[@]}"; do
    f=${ips[fastdet-$head-$mode]:-nan}; p=${ips[pytorch-$head-$mode]:-nan}
    printf '%-10s %-6s %14s %14s %8s\n' "$head" "$mode" "$f" "$p" "$("$py" -c "import sys; f, p = sys.argv[1:]; print('-' if 'nan' in (f, p) else f'{float(f) / float(p):.2f}x')" "$f" "$p")"
  done
done
echo
[ $step_ok = 1 ] && record PASS "training step" $(( $(date +%s) - t0 )) "fp32 fastdet ${ips[fastdet-detection-fp32]:-?} vs PyTorch ${ips[pytorch-detection-fp32]:-?} img/s${ips[fastdet-detection-amp]:+; amp ${ips[fastdet-detection-amp]} vs ${ips[pytorch-detection-amp]:-?}}; SSD fp32 ${ips[fastdet-ssd-fp32]:-?} vs ${ips[pytorch-ssd-fp32]:-?}${ips[fastdet-ssd-amp]:+; SSD amp ${ips[fastdet-ssd-amp]} vs ${ips[pytorch-ssd-amp]:-?}}" \
  || record FAIL "training step" $(( $(date +%s) - t0 ))

# 3. synthetic SSD ------------------------------------------------------------------------------
t0=$(date +%s)
if [ "$gpu" = 1 ]; then syn=(); else syn=(--epochs 1 --n-train 192 --bs 16 --sz 96); say "no GPU: the synthetic SSD for 1 epoch on 192 images at 96 px (the full run is GPU-only here: ~15 min on 2 CPU cores)"; fi
res=$(timeout 300 "$bin/ssd_synthetic" --dir "$log_dir/ssd-synthetic" "${syn[@]}" 2>&1); rc=$?
echo "$res" | grep -v '^\s*$' | tail -25
map=$(grep -o 'VOC07 mAP on the synthetic validation set: [0-9.]*' <<<"$res" | awk '{print $NF}')
epoch_line=$(grep -o 'trained .* per epoch on .*' <<<"$res")
if [ $rc -eq 0 ] && [ -n "$map" ] && [ "$gpu" = 1 ] && "$py" -c "import sys; sys.exit(float(sys.argv[1]) >= 0.7)" "$map"; then
  record FAIL "synthetic SSD" $(( $(date +%s) - t0 )) "VOC07 mAP $map, below 0.7 (the same recipe reaches 0.82 or more on a CPU: assets/models/ssd_synthetic.json); $epoch_line"
elif [ $rc -eq 0 ] && [ -n "$map" ]; then record PASS "synthetic SSD" $(( $(date +%s) - t0 )) "VOC07 mAP $map; $epoch_line"
else record FAIL "synthetic SSD" $(( $(date +%s) - t0 )) "exit $rc"; fi

# 4. train, resume, predict, eval on the sample --------------------------------------------------
t0=$(date +%s)
run="$log_dir/run-sample"
rm -rf "$run"
ok=1
say "fastdet train: stage 1 of $here/configs/bundle_ssd.json"
timeout 300 "$bin/fastdet" train --config "$here/configs/bundle_ssd.json" --run-dir "$run" --max-stages 1 || ok=0
[ -f "$run/stage-1.safetensors" ] || { ok=0; say "no stage-1 checkpoint in $run"; }
say "fastdet train --resume: stage 2"
timeout 300 "$bin/fastdet" train --config "$here/configs/bundle_ssd.json" --run-dir "$run" --resume || ok=0
[ -f "$run/stage-2.safetensors" ] || { ok=0; say "no stage-2 checkpoint in $run"; }
timeout 300 "$bin/fastdet" predict --weights "$run" --data "$FASTDET_SAMPLE" --split val --thresh 0.05 --out "$log_dir/dets.json" --report "$log_dir/report.html" || ok=0
timeout 120 "$bin/fastdet" eval --data "$FASTDET_SAMPLE" --split val --detections "$log_dir/dets.json" --metric voc07 || ok=0
[ $ok = 1 ] && record PASS "train/resume/predict/eval" $(( $(date +%s) - t0 )) "report: $log_dir/report.html" \
  || record FAIL "train/resume/predict/eval" $(( $(date +%s) - t0 ))

echo
say "summary (log: $log_dir/run-checks.log)"
printf '%s\n' "${results[@]}"
! printf '%s\n' "${results[@]}" | grep -q '^FAIL'
