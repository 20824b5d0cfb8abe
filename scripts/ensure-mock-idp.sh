#!/bin/sh
# The OIDC login test runs a real identity provider on loopback: npm's oauth2-mock-server, installed
# with the machine's npm into the virtualenv (never globally).
DEST="${1:-.venv/idp}"
VERSION=9.3.0
if [ -f "$DEST/node_modules/oauth2-mock-server/package.json" ] && \
   grep -q "\"version\": \"$VERSION\"" "$DEST/node_modules/oauth2-mock-server/package.json"; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing nodejs and npm for the OIDC login test's identity provider"
        (apt-get update -qq >/dev/null 2>&1 || true)
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null || exit $?
    else
        echo "warning: no npm; the OIDC login test will be skipped (install nodejs and npm)" >&2
        exit 0
    fi
fi
mkdir -p "$DEST"
npm install --silent --no-audit --no-fund --prefix "$DEST" "oauth2-mock-server@$VERSION"
