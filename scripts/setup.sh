#!/usr/bin/env bash
# One-command environment for fastdet, idempotent: every step checks before it works.
#
#   1. a Python environment with the pip list of environment.yml (libtorch comes from the torch
#      wheel): $ENV_PREFIX if given (a conda env, say), else a venv kept in a per-user cache
#      keyed by the torch and Python versions, reused by every clone; `.venv` links to it;
#   2. evcxr_jupyter (the Rust kernel), `cargo install --locked` into the cache; `tools/` links to it;
#   3. mold, the fast linker evcxr uses when it finds it (Debian's package, when apt-get can
#      install it: as root or with passwordless sudo; otherwise the system linker);
#   3b. cmake and nasm (Debian's packages, the same way), which the turbojpeg crate needs to build
#      libjpeg-turbo from source;
#   4. the kernelspec "Rust (fastdet)" inside that environment: its command is the launcher
#      scripts/kernel.py (copied into the cache), which gives each running kernel its own
#      compile folder from a pool of warm ones and turns Jupyter's interrupt into a gentle stop
#      ("interrupt_mode": "signal"); it carries LIBTORCH_USE_PYTORCH=1, the environment's bin on
#      PATH and torch/lib on LD_LIBRARY_PATH;
#   4b. the kernel's cargo settings (scripts/kernel-cargo.toml) in the pool, above every slot;
#   5. one warm compile folder in that pool (fastdet and its dependencies compiled for the
#      kernel, ~4 minutes once), so a new machine's first notebook cell takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

EVCXR_VERSION=0.22.0
KERNEL_NAME=fastdet-rust
cache=${FASTDET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fastdet}
mkdir -p "$cache"
start=$(date +%s)
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs"
base_python=${PYTHON:-python3}
command -v "$base_python" >/dev/null || die "$base_python not found (Python 3.10+ is needed)"

# One setup at a time per cache (two clones setting up at once share it).
exec 9>"$cache/.setup.lock"
flock 9

reqs=$("$base_python" scripts/requirements.py environment.yml)
torch=$(sed -n 's/^torch==//p' <<<"$reqs")
[ -n "$torch" ] || die "environment.yml pins no torch==<version>"
reqs_hash=$(sha256sum <<<"$reqs" | cut -c1-16)

# 1. Python environment -----------------------------------------------------------------------
if [ -n "${ENV_PREFIX:-}" ]; then
  env_dir=$(cd "$ENV_PREFIX" && pwd) || die "ENV_PREFIX=$ENV_PREFIX is not a folder"
  [ -x "$env_dir/bin/python" ] || die "ENV_PREFIX=$env_dir has no bin/python"
else
  pyver=$("$base_python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  env_dir="$cache/venv-torch$torch-py$pyver"
  if [ -d "$env_dir" ] && ! "$env_dir/bin/python" -c 'import sys' 2>/dev/null; then
    say "removing broken venv $env_dir"; rm -rf "$env_dir"
  fi
  if [ ! -d "$env_dir" ]; then
    say "creating venv $env_dir"
    "$base_python" -m venv "$env_dir"
  fi
fi
stamp="$env_dir/.fastdet-requirements-$reqs_hash"
if [ ! -f "$stamp" ]; then
  say "installing the pip packages of environment.yml into $env_dir (torch is ~5 GB the first time)"
  "$env_dir/bin/python" -m pip install --disable-pip-version-check -q $reqs
  rm -f "$env_dir"/.fastdet-requirements-*
  touch "$stamp"
else
  say "python environment ready: $env_dir"
fi
[ -n "${ENV_PREFIX:-}" ] || ln -sfn "$env_dir" .venv
torch_lib=$("$env_dir/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')

# 2. evcxr_jupyter ----------------------------------------------------------------------------
evcxr_dir="$cache/evcxr-$EVCXR_VERSION"
evcxr="$evcxr_dir/bin/evcxr_jupyter"
if [ ! -x "$evcxr" ]; then
  say "building evcxr_jupyter $EVCXR_VERSION (5-10 minutes, once per machine)"
  # Fat LTO and one codegen unit: evcxr's rust-analyzer, which parses every dependency on a
  # notebook's first cells, runs ~10% faster (2 more minutes of build, once; docs/kernel.md).
  CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_DEBUG=0 \
    cargo install --locked --quiet evcxr_jupyter --version "$EVCXR_VERSION" --root "$evcxr_dir"
else
  say "evcxr_jupyter ready: $evcxr"
fi
mkdir -p tools
ln -sfn "$evcxr_dir" "tools/evcxr-$EVCXR_VERSION"

# 3. mold ------------------------------------------------------------------------------------
if ! command -v mold >/dev/null; then
  apt=""
  if [ "$(id -u)" = 0 ]; then apt="apt-get"; elif sudo -n true 2>/dev/null; then apt="sudo apt-get"; fi
  if [ -n "$apt" ] && command -v apt-get >/dev/null; then
    say "installing mold (the fast linker evcxr uses)"
    $apt install -y -qq mold >/dev/null 2>&1 || { $apt update -qq >/dev/null 2>&1 && $apt install -y -qq mold >/dev/null 2>&1; } \
      || say "warning: could not install mold; kernels link with the system linker (slower)"
  else
    say "mold not found and no apt-get as root: kernels link with the system linker (slower)"
  fi
fi

# 3b. cmake and nasm: the turbojpeg crate builds libjpeg-turbo (with its SIMD code) from source.
if ! command -v cmake >/dev/null || ! command -v nasm >/dev/null; then
  apt=""
  if [ "$(id -u)" = 0 ]; then apt="apt-get"; elif sudo -n true 2>/dev/null; then apt="sudo apt-get"; fi
  if [ -n "$apt" ] && command -v apt-get >/dev/null; then
    say "installing cmake and nasm (to build libjpeg-turbo for the turbojpeg crate)"
    $apt install -y -qq cmake nasm >/dev/null 2>&1 || { $apt update -qq >/dev/null 2>&1 && $apt install -y -qq cmake nasm >/dev/null 2>&1; } \
      || say "warning: could not install cmake and nasm; building fastdet needs cmake (and nasm for a fast JPEG decoder)"
  else
    command -v cmake >/dev/null || say "warning: no cmake and no apt-get as root: install cmake (and nasm), which building fastdet needs"
  fi
fi

# 4. kernelspec -------------------------------------------------------------------------------
kernel_dir="$env_dir/share/jupyter/kernels/$KERNEL_NAME"
mkdir -p "$kernel_dir"
cargo_bin=$(dirname "$(command -v cargo)")
# evcxr links each cell against the toolchain's libstd-*.so, found through LD_LIBRARY_PATH.
rust_lib="$(rustc --print target-libdir)"
# The launcher lives in the cache, so the kernelspec works whichever clone set it up.
launcher="$cache/kernel-launcher.py"
cp scripts/kernel.py "$launcher.tmp" && mv "$launcher.tmp" "$launcher"
pool="$cache/evcxr-pool-$EVCXR_VERSION"
# The single compile folder of earlier versions becomes the pool's first (warm) slot.
old_tmp="$cache/evcxr-tmp-$EVCXR_VERSION"
if [ -d "$old_tmp" ] && [ ! -e "$pool/slot-0" ]; then
  mkdir -p "$pool" && mv "$old_tmp" "$pool/slot-0"
fi
# The kernel's cargo settings (opt-levels, codegen units), read by every build in the pool.
mkdir -p "$pool/.cargo"
cmp -s scripts/kernel-cargo.toml "$pool/.cargo/config.toml" || cp scripts/kernel-cargo.toml "$pool/.cargo/config.toml"
"$env_dir/bin/python" - "$kernel_dir/kernel.json" <<PY
import json, sys
spec = {
    "argv": ["$env_dir/bin/python", "$launcher", "$evcxr", "--control_file", "{connection_file}"],
    "display_name": "Rust (fastdet)",
    "language": "rust",
    "interrupt_mode": "signal",
    "env": {
        "LIBTORCH_USE_PYTORCH": "1",
        "PATH": "$env_dir/bin:$cargo_bin:\${PATH}",
        "LD_LIBRARY_PATH": "$torch_lib:$rust_lib",
        "FASTDET_EVCXR_POOL": "$pool",
    },
}
with open(sys.argv[1], "w") as f:
    json.dump(spec, f, indent=2)
PY
say "kernel \"Rust (fastdet)\" ($KERNEL_NAME) registered in $kernel_dir"

# 5. a warm compile folder --------------------------------------------------------------------
# The notebooks' first cell compiles fastdet and its dependencies into a slot of the pool; do it
# here once, so that a new machine's first cell takes seconds.
JUPYTER_PATH="$env_dir/share/jupyter" LIBTORCH_USE_PYTORCH=1 "$env_dir/bin/python" scripts/warm_kernel.py "$root"
say "setup done in $(( $(date +%s) - start )) s"
