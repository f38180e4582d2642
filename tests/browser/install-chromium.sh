#!/usr/bin/env bash
# Installs the browser the console tests drive: Debian's `chromium` and `chromium-driver` (and a
# small CJK font, so zh-CN screenshots show Chinese rather than empty boxes) when any is missing.
# Called by .ci/run before `cargo test` and by the test harness (tests/src/browser.rs) on a fresh
# machine. Needs root (apt-get).
set -euo pipefail

CJK_FONT=/usr/share/fonts/truetype/wqy/wqy-microhei.ttc
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && [ -f "$CJK_FONT" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "Chromium, chromedriver or the CJK font is missing; the console browser tests need them." >&2
    echo "Install them as root:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y chromium chromium-driver fonts-wqy-microhei" >&2
    echo "(or run this script as root: sudo $0)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-wqy-microhei
