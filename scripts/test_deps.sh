#!/usr/bin/env bash
# What `make test` needs beyond scripts/setup.sh: Debian's Chromium, which renders the
# evaluation report headless in tests/it/report.rs, and chromium-driver, through which
# tests/test_browser.py drives JupyterLab in it. Idempotent: seconds when they are there.
set -euo pipefail
say() { printf '[test-deps] %s\n' "$*"; }
need=()
command -v chromium >/dev/null || [ -n "${FASTDET_CHROMIUM:-}" ] || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ ${#need[@]} = 0 ]; then
  exit 0
fi
apt=""
if [ "$(id -u)" = 0 ]; then apt="apt-get"; elif sudo -n true 2>/dev/null; then apt="sudo apt-get"; fi
if [ -n "$apt" ] && command -v apt-get >/dev/null; then
  say "installing ${need[*]} (Debian's packages; the browser tests use them, about 1 minute)"
  $apt install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { $apt update -qq >/dev/null 2>&1 && $apt install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1; } \
    || say "warning: could not install ${need[*]}; the browser tests will fail (FASTDET_CHROMIUM names another browser for the report's)"
else
  say "no ${need[*]} and no apt-get as root: install them, or the browser tests fail"
fi
