#!/usr/bin/env bash
# `make gpu-bundle`: dist/fastdet-gpu/, a self-contained check of fastdet for a GPU machine with
# Python's torch 2.11 (CUDA) but no Rust and no internet: the `fastdet` binary and the examples
# it runs built against torch 2.11 from PyPI (scripts/torch_build.sh 2.11), the bundled sample,
# a config, PyTorch's side of the training-step benchmark and run-checks.sh (see its header).
# At most 60 MiB (checked). Copy the folder over, then `./run-checks.sh LOG_DIR` there.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
torch=${BUNDLE_TORCH:-2.11}
build=$(bash "$root/scripts/torch_build.sh" "$torch" | tail -1)
out="$root/dist/fastdet-gpu"
rm -rf "$out"
mkdir -p "$out/bin" "$out/configs" "$out/data"
for b in fastdet; do cp "$build/target/release/$b" "$out/bin/"; done
for e in ssd_synthetic train_step; do cp "$build/target/release/examples/$e" "$out/bin/"; done
strip "$out"/bin/*
cp -r "$root/data/coco128-voc" "$out/data/"
cp "$root/scripts/gpu/run-checks.sh" "$root/scripts/gpu/train_step_peer.py" "$root/scripts/gpu/lesson_ssd.py" "$out/"
cp "$root/scripts/gpu/bundle_ssd.json" "$out/configs/"
basename "$build" | sed 's/^torch-//' > "$out/BUILT_FOR_TORCH"
(cd "$root" && git describe --always --dirty 2>/dev/null || echo unknown) > "$out/VERSION"
cat > "$out/README.txt" <<TXT
fastdet GPU check, $(cat "$out/VERSION"), built for torch $(cat "$out/BUILT_FOR_TORCH") (tch from PyPI's wheel).
Needs: x86-64 Linux with glibc >= $(objdump -T "$out"/bin/* 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1), Python with torch $(cat "$out/BUILT_FOR_TORCH") and torchvision; an NVIDIA GPU for the GPU steps.
Run:   ./run-checks.sh LOG_DIR        (PYTHON=/path/to/python to pick the torch; default /opt/torch/.venv/bin/python, then python3)
Log:   LOG_DIR/run-checks.log, with the report of step 4 in LOG_DIR/report.html.
TXT
size=$(du -sb "$out" | cut -f1)
mib=$(( (size + 1048575) / 1048576 ))
echo "[gpu-bundle] $out: $mib MiB ($(ls "$out/bin" | tr '\n' ' '))"
du -sh "$out"/bin/* "$out/data" | sed 's/^/[gpu-bundle]   /'
[ "$size" -le $(( 60 * 1048576 )) ] || { echo "[gpu-bundle] over the 60 MiB limit" >&2; exit 1; }
