#!/bin/sh
# Make sure PostgreSQL's server binaries are installed: the `postgres` tests start a real server
# of Debian's package in a temporary folder (tests/servers.py), as the postgres user it creates.
if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing the PostgreSQL server (Debian's postgresql package) for the postgres tests"
    (apt-get update -qq >/dev/null 2>&1 || true)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    exit $?
fi
echo "error: PostgreSQL server binaries not found; install them (Debian/Ubuntu: apt-get install postgresql)" >&2
exit 1
