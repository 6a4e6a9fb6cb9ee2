#!/usr/bin/env bash
# Create .venv at the repository root with the pinned dependencies (python/requirements.lock)
# and pertcontrast installed editable. Re-runs are fast: a stamp of the lock file and
# pyproject.toml inside the venv says when nothing changed, and pip's cache keeps the
# large torch wheel from being downloaded twice.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
lock="$root/python/requirements.lock"
stamp="$venv/.pertcontrast-setup.sha256"

# The lock file was resolved for Python 3.11.
find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.11 python3; do
        if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "setup-python: Python >= 3.11 not found (set PYTHON=/path/to/python3.11)." >&2
    return 1
}

if [[ ! -x "$venv/bin/python" ]]; then
    python="$(find_python)"
    echo "setup-python: creating $venv with $("$python" --version)" >&2
    "$python" -m venv "$venv"
fi

wanted="$(cat "$lock" "$root/python/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] \
    && "$venv/bin/python" -c 'import pertcontrast' >/dev/null 2>&1; then
    echo "setup-python: $venv is up to date" >&2
    exit 0
fi

pip=("$venv/bin/python" -m pip --disable-pip-version-check)
echo "setup-python: installing $lock into $venv" >&2
"${pip[@]}" install --quiet -r "$lock" </dev/null
# The lock already holds every dependency: install only the package itself.
"${pip[@]}" install --quiet --no-deps -e "$root/python" </dev/null
echo "$wanted" > "$stamp"
echo "setup-python: $venv ready ($("$venv/bin/pertcontrast" --version))" >&2
