#!/usr/bin/env bash
# Installs the browser the console tests drive: Debian's `chromium` and `chromium-driver` (and a
# small CJK font, so zh-CN screenshots show Chinese rather than empty boxes), and a Java runtime
# for the Nu HTML checker that validates every page, when any is missing.
# Called by .ci/run before `cargo test` and by the test harness (tests/src/browser.rs) on a fresh
# machine. Needs root (apt-get).
set -euo pipefail

CJK_FONT=/usr/share/fonts/truetype/wqy/wqy-microhei.ttc
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && [ -f "$CJK_FONT" ] && command -v java >/dev/null; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "Chromium, chromedriver, the CJK font or Java is missing; the console browser tests need them." >&2
    echo "Install them as root:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y chromium chromium-driver fonts-wqy-microhei default-jre-headless" >&2
    echo "(or run this script as root: sudo $0)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
packages="chromium chromium-driver fonts-wqy-microhei"
command -v java >/dev/null || packages="$packages default-jre-headless"
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $packages
