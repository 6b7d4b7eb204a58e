#!/bin/sh
# Restore a backup: restore_postgresql_db.sh [latest|1-Monday|ARCHIVE] [--yes] [--database ALIAS].
# Arguments go to "opskit restore"; its exit status is this script's.
set -eu
# shellcheck source=_opskit.sh source-path=SCRIPTDIR
. "$(dirname -- "$0")/_opskit.sh"
opskit_exec restore "$@"
