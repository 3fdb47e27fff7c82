#!/usr/bin/env bash
# System packages the tests need, installed only if missing (idempotent, quiet).
# - PostgreSQL server binaries (initdb, pg_ctl) for tests/serving/test_audit_pg.py, which starts a
#   throwaway server; without them (or without a Python driver) those tests skip with the reason.
set -euo pipefail

have_postgres() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1
}

if ! have_postgres; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null
      apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    }
  else
    echo "test-system-deps: PostgreSQL server binaries are missing and apt-get is unavailable (or not root);" \
      "the PostgreSQL audit tests will skip" >&2
  fi
fi
