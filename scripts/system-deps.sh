#!/usr/bin/env bash
# System packages the tests need beyond Python's: Debian's chromium and chromium-driver (the
# browser test drives the MLflow UI in headless Chromium; nothing is downloaded at run time).
# Installs them with apt only when missing (as root); otherwise says what to install.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} (apt-get; for the browser test)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; }; then
    echo "warning: apt-get could not install ${missing[*]}: the browser test will fail (the others run)" >&2
  fi
else
  echo "note: ${missing[*]} missing: the browser test (tests/orchestrator/test_ui_browser.py) will fail;" \
       "install them (Debian/Ubuntu: sudo apt-get install ${missing[*]}), or set ORCH_SKIP_BROWSER=1 to skip it" >&2
fi
