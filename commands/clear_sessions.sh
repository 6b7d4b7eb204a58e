#!/bin/sh
# Delete expired Django sessions (Django's clearsessions, run and reported by opskit).
set -eu
# shellcheck source=_opskit.sh source-path=SCRIPTDIR
. "$(dirname -- "$0")/_opskit.sh"
opskit_exec clear-sessions "$@"
