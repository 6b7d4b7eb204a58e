# Sourced by the scripts beside it: find the project and opskit, then exec opskit.
# shellcheck shell=sh

# opskit_exec ARGS...: run "opskit --project-dir <project> ARGS..." in place of the script.
opskit_exec() {
    # The project is the folder above commands/, as in the handbook's layout.
    project=${OPSKIT_PROJECT_DIR:-$(cd -- "$(dirname -- "$0")/.." && pwd)}
    if [ -n "${OPSKIT_BIN:-}" ]; then
        bin=$OPSKIT_BIN
    elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/opskit" ]; then
        bin=$VIRTUAL_ENV/bin/opskit
    elif [ -x "$project/.venv/bin/opskit" ]; then
        bin=$project/.venv/bin/opskit
    elif [ -x "$project/venv/bin/opskit" ]; then
        bin=$project/venv/bin/opskit
    elif command -v opskit >/dev/null 2>&1; then
        bin=opskit
    else
        echo "$0: cannot find opskit: set OPSKIT_BIN or VIRTUAL_ENV, or create $project/.venv" >&2
        exit 127
    fi
    exec "$bin" --project-dir "$project" "$@"
}
