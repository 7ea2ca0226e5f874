#!/usr/bin/env bash
# What `make test` needs beyond scripts/setup.sh: Debian's Chromium, which renders the
# evaluation report headless in tests/it/report.rs. Idempotent: seconds when it is there.
set -euo pipefail
say() { printf '[test-deps] %s\n' "$*"; }
if command -v chromium >/dev/null || [ -n "${FASTDET_CHROMIUM:-}" ]; then
  exit 0
fi
apt=""
if [ "$(id -u)" = 0 ]; then apt="apt-get"; elif sudo -n true 2>/dev/null; then apt="sudo apt-get"; fi
if [ -n "$apt" ] && command -v apt-get >/dev/null; then
  say "installing chromium (Debian's package; the report's browser test renders the page with it, about 1 minute)"
  $apt install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
    || { $apt update -qq >/dev/null 2>&1 && $apt install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } \
    || say "warning: could not install chromium; the report's browser test will fail (set FASTDET_CHROMIUM to a browser)"
else
  say "no chromium and no apt-get as root: install chromium or set FASTDET_CHROMIUM, or the report's browser test fails"
fi
