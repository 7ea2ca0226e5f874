#!/usr/bin/env bash
# Build fastdet against another PyTorch than the default venv's 2.13, choosing the tch release
# that matches it (tch pins one libtorch each: 0.24 = torch 2.11, 0.25 = 2.12, 0.26 = 2.13).
#
#   scripts/torch_build.sh existing [cargo build args]   # the torch that `python3` on PATH imports
#   scripts/torch_build.sh 2.11     [cargo build args]   # torch 2.11 from PyPI, in a cached venv
#
# Cargo cannot hold two tch versions as alternative features (both link the native library
# "tch"), so this writes a manifest for the same sources with the matching tch under
# build/torch-<version>/ (its own Cargo.lock, seeded from the main one, and target folder) and
# builds the `fastdet` binary and the examples there. The main Cargo.toml is not touched. It
# prints the build folder; `source <folder>/env.sh` then puts that torch/lib on LD_LIBRARY_PATH.
# The folder's `target` is a link into the per-user cache, one per torch version and Python, so
# the dependencies compile once per machine rather than once per clone (cargo still rebuilds
# fastdet whenever the sources it last built were other ones).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${FASTDET_CACHE:-$HOME/.cache/fastdet}
say() { printf '[torch-build] %s\n' "$*" >&2; }
print_python=0
if [ "${1:-}" = --python ]; then print_python=1; shift; fi  # only print the python of that torch
want=${1:?usage: scripts/torch_build.sh [--python] existing|2.11|2.12|2.13 [cargo build args]}
shift

case "$want" in
  existing)
    py=$(command -v python3 || command -v python || true)
    [ -n "$py" ] || { say "no python3 on PATH: TORCH=existing builds against the torch it imports"; exit 1; }
    ;;
  2.11|2.12|2.13)
    pyver=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    venv="$cache/venv-torch$want.0-py$pyver"
    tv=$(case $want in 2.11) echo 0.26.0;; 2.12) echo 0.27.0;; 2.13) echo 0.28.0;; esac)
    if ! "$venv/bin/python" -c 'import torch, torchvision' 2>/dev/null; then
      say "installing torch==$want.0 and torchvision==$tv from PyPI into $venv (a few minutes, once)"
      python3 -m venv "$venv"
      "$venv/bin/pip" install -q --disable-pip-version-check "torch==$want.0" "torchvision==$tv" numpy
    fi
    py="$venv/bin/python"
    ;;
  *) say "unknown torch '$want': existing, 2.11, 2.12 or 2.13"; exit 1 ;;
esac

if [ $print_python = 1 ]; then echo "$py"; exit 0; fi
read -r ver torch_lib < <("$py" -c 'import os, torch; print(torch.__version__.split("+")[0], os.path.join(os.path.dirname(torch.__file__), "lib"))') \
  || { say "$py cannot import torch"; exit 1; }
case "${ver%.*}" in
  2.11) tch=0.24 ;;
  2.12) tch=0.25 ;;
  2.13) tch=0.26 ;;
  *) say "$py imports torch $ver; fastdet builds against 2.11, 2.12 or 2.13 (tch 0.24, 0.25, 0.26)"; exit 1 ;;
esac
say "torch $ver ($py) -> tch $tch"

dir="$root/build/torch-$ver"
mkdir -p "$dir/.cargo"
# The package section and dependencies of the main manifest, tch swapped, targets pointing back
# at the sources; no tests or benches (they run in the main tree).
python3 - "$root/Cargo.toml" "$dir/Cargo.toml" "$tch" "$root" <<'PY'
import re, sys, pathlib
src, dst, tch, root = sys.argv[1:]
text = pathlib.Path(src).read_text()
keep, skip = [], False
for line in text.splitlines():
    if line.startswith("["):
        skip = line.strip() in ("[[bench]]", "[dev-dependencies]")
    if not skip:
        keep.append(line)
out = "\n".join(keep) + "\n"
out, n = re.subn(r'^tch = "[^"]*"', f'tch = "{tch}"', out, flags=re.M)
assert n == 1, "the main Cargo.toml has no `tch = \"...\"` line"
out = out.replace("[package]\n", "[package]\nautobins = false\nautoexamples = false\nautotests = false\nautobenches = false\n", 1)
rel = "../.."
out += f'\n[lib]\npath = "{rel}/src/lib.rs"\n\n[[bin]]\nname = "fastdet"\npath = "{rel}/src/bin/fastdet.rs"\n'
for ex in sorted(pathlib.Path(root, "examples").glob("*.rs")):
    out += f'\n[[example]]\nname = "{ex.stem}"\npath = "{rel}/examples/{ex.name}"\n'
out += "\n[workspace]\n"
pathlib.Path(dst).write_text(out)
PY
cat > "$dir/.cargo/config.toml" <<CFG
# Written by scripts/torch_build.sh: the sources' tree, for data/ and models/ (fastdet::util::crate_root).
[env]
FASTDET_ROOT = { value = "../..", relative = true }
CFG
cat > "$dir/env.sh" <<ENV
# Written by scripts/torch_build.sh: run the binaries of $dir against torch $ver.
export LD_LIBRARY_PATH="$torch_lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
ENV
[ -f "$dir/Cargo.lock" ] || cp "$root/Cargo.lock" "$dir/Cargo.lock"
shared="$cache/target-torch-$ver-$(printf '%s' "$py" | md5sum | cut -c1-8)"
mkdir -p "$shared"
if [ "$(readlink "$dir/target" 2>/dev/null)" != "$shared" ]; then
  rm -rf "$dir/target"
  ln -s "$shared" "$dir/target"
fi

export LIBTORCH_USE_PYTORCH=1 VIRTUAL_ENV="$(cd "$(dirname "$py")/.." && pwd)"
export PATH="$(dirname "$py"):$PATH" LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset LIBTORCH LIBTORCH_LIB LIBTORCH_INCLUDE
(cd "$dir" && CARGO_TARGET_DIR="$dir/target" cargo build --release --bins --examples "$@")
say "built against torch $ver: $dir/target/release/fastdet (source $dir/env.sh to run it)"
echo "$dir"
