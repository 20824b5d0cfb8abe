#!/bin/sh
# Make sure a CJK font is installed: the sample fleet renders Chinese licence plates with it.
if command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh file 2>/dev/null | head -n 1)" ]; then
    exit 0
fi
for f in /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc; do
    [ -f "$f" ] && exit 0
done
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing a CJK font (fonts-wqy-zenhei) for the sample fleet's plates"
    (apt-get update -qq >/dev/null 2>&1 || true)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-zenhei fontconfig >/dev/null
    exit $?
fi
echo "warning: no CJK font found; install one (Debian/Ubuntu: apt-get install fonts-wqy-zenhei)," >&2
echo "         or set FLEETGATE_CJK_FONT=/path/to/font.ttc, before generating the sample fleet" >&2
exit 0
