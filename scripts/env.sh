# Source this to build and run fastdet outside Jupyter: `source scripts/env.sh`.
# Uses $ENV_PREFIX if set, else the .venv link made by scripts/setup.sh.
_fastdet_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_fastdet_env=${ENV_PREFIX:-$_fastdet_root/.venv}
if [ ! -x "$_fastdet_env/bin/python" ]; then
  echo "fastdet: no Python environment at $_fastdet_env; run 'make setup' first" >&2
  return 1 2>/dev/null || exit 1
fi
export LIBTORCH_USE_PYTORCH=1
export PATH="$_fastdet_env/bin:$PATH"
_fastdet_torch_lib=$("$_fastdet_env/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$_fastdet_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export JUPYTER_PATH="$_fastdet_env/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
unset _fastdet_root _fastdet_env _fastdet_torch_lib
