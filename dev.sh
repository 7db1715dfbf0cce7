#!/usr/bin/env bash
# One entry point for a fresh machine: creates or reuses .venv, installs the locked set, then runs
#   ./dev.sh demo [args]   the main job on the embedded default (local dirs, local Dask, ephemeral Prefect)
#   ./dev.sh test [args]   the whole test suite (what CI runs through .ci/run)
#   ./dev.sh shell         a shell inside the environment
#   ./dev.sh <anything>    runs `taxi-assets <anything>` inside the environment
set -euo pipefail
cd "$(dirname "$0")"

UV_VERSION=0.13.8
PY=${PYTHON:-python3.11}

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
fi
# --locked: a lock file out of date with pyproject.toml fails here instead of resolving something new.
# --all-extras: the report and s3-demo extras too, and the dev group (tests, ruff, mypy) by default.
UV_PROJECT_ENVIRONMENT=.venv .venv/bin/uv sync --locked --all-extras --quiet --python .venv/bin/python

export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_HOME="${PREFECT_HOME:-$PWD/.venv/prefect-home}"
export DO_NOT_TRACK=1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-180}"

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
    # Three pytest-xdist workers, one test file each at a time (module fixtures stay whole): most of the suite
    # waits on servers, subprocesses and clusters, so three overlap well on two cores. TEST_WORKERS=0: serial.
    test) exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-3}" --dist loadfile "$@" ;;
    demo) exec .venv/bin/taxi-assets demo "$@" ;;
    shell) exec bash --rcfile <(echo 'source .venv/bin/activate') ;;
    help|-h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) exec .venv/bin/taxi-assets "$cmd" "$@" ;;
esac
