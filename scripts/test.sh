#!/usr/bin/env bash
# Every test: the Python package (python/tests) and the pipeline driven by real Nextflow
# (tests/). Sets up what is missing first. Fails when a suite fails or collects no tests.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup-system.sh --browser  # Chromium: the report tests render pages headless
bash scripts/setup-python.sh
nextflow="$(bash scripts/setup-nextflow.sh | tail -n 1)"

export PATH="$root/.venv/bin:$PATH"
export PERTCONTRAST_NEXTFLOW="$nextflow"

status=0
# Two runs, so each suite keeps its own pytest configuration (python/pyproject.toml, pytest.ini).
for suite in python/tests tests; do
    echo "== pytest $suite" >&2
    rc=0
    "$root/.venv/bin/python" -m pytest "$suite" -ra "$@" </dev/null || rc=$?
    if [[ $rc -eq 5 ]]; then
        echo "test.sh: no tests ran in $suite" >&2
        status=1
    elif [[ $rc -ne 0 ]]; then
        status=$rc
    fi
done
exit "$status"
