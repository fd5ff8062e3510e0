#!/usr/bin/env bash
# Installs (if missing) and starts a local PostgreSQL from Debian's packages, with a role the
# store tests use, and prints its URL. Idempotent: safe to run again.
set -euo pipefail
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  $SUDO apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h 2>/dev/null | grep -q "^$version main"; then
  $SUDO pg_createcluster "$version" main >&2
fi
if ! pg_lsclusters -h | grep -q "^$version main .* online"; then
  $SUDO pg_ctlcluster "$version" main start >&2
fi
if [ "$(id -u)" = 0 ]; then AS_PG=(runuser -u postgres --); else AS_PG=(sudo -u postgres); fi
psql_admin() { (cd / && "${AS_PG[@]}" psql -v ON_ERROR_STOP=1 -qtAX "$@"); }
for _ in $(seq 1 30); do psql_admin -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.5; done
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'salve_test'")" != 1 ]; then
  psql_admin -c "CREATE ROLE salve_test LOGIN CREATEDB PASSWORD 'salve_test'" >/dev/null
fi
port=$(psql_admin -c 'SHOW port')
echo "postgres://salve_test:salve_test@127.0.0.1:$port/postgres"
