#!/usr/bin/env bash
# System packages for the real-browser compliance tests (tests/serving/test_compliance_browser.py):
# Debian's headless Chromium and its matching chromedriver. Idempotent: installs nothing when both
# binaries are already there. Run as root (or with sudo) on Debian/Ubuntu.
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    echo "chromium and chromedriver already installed: $(/usr/bin/chromium --version 2>/dev/null || true)"
    exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium chromium-driver
echo "installed: $(/usr/bin/chromium --version 2>/dev/null || true); $(/usr/bin/chromedriver --version 2>/dev/null || true)"
