#!/bin/sh
# Make sure Pango is installed: WeasyPrint lays out the PDF filings with it (`fleetgate report ... --format pdf`).
if ldconfig -p 2>/dev/null | grep -q "libpangoft2-1.0.so.0"; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Pango (libpango-1.0-0, libpangoft2-1.0-0) for the PDF filings"
    (apt-get update -qq >/dev/null 2>&1 || true)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpango-1.0-0 libpangoft2-1.0-0 >/dev/null
    exit $?
fi
echo "warning: Pango not found; PDF filings need it (Debian/Ubuntu: apt-get install libpango-1.0-0" >&2
echo "         libpangoft2-1.0-0); Markdown and HTML filings work without it" >&2
exit 0
