#!/bin/sh
# Make sure a headless chromium is installed for the dashboard's browser tests (Playwright drives
# Debian's chromium-headless-shell; Playwright's own browser download is not used). Installed from
# the system packages when we are allowed to (root with apt), like the CJK font.
for f in "${FLEETGATE_CHROMIUM:-}" /usr/lib/chromium/chromium-headless-shell /usr/bin/chromium-headless-shell; do
    [ -n "$f" ] && [ -x "$f" ] && exit 0
done
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium-headless-shell for the dashboard's browser tests"
    (apt-get update -qq >/dev/null 2>&1 || true)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell >/dev/null
    exit $?
fi
echo "warning: no headless chromium found; the browser tests will be skipped. Install one" >&2
echo "         (Debian/Ubuntu: apt-get install chromium-headless-shell) or set FLEETGATE_CHROMIUM" >&2
exit 0
