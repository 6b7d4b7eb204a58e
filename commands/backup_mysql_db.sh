#!/bin/sh
# Back up the project's databases into db_backups/ (weekday rotation, verified, latest.*).
# opskit handles PostgreSQL, MySQL/MariaDB and SQLite alike; the name is the handbook's.
# OPSKIT_DATABASE=ALIAS backs up only that alias; arguments go to "opskit backup".
set -eu
# shellcheck source=_opskit.sh source-path=SCRIPTDIR
. "$(dirname -- "$0")/_opskit.sh"
if [ -n "${OPSKIT_DATABASE:-}" ]; then
    set -- --database "$OPSKIT_DATABASE" "$@"
fi
opskit_exec backup "$@"
