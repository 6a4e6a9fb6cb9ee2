#!/usr/bin/env bash
# The main job on its embedded default: the pipeline's test profile (two simulated screens)
# with a real Nextflow run. Outputs go to results/ (README.md describes the layout).
# Extra arguments go to `nextflow run`, e.g. `bash scripts/demo.sh -resume`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup-system.sh
bash scripts/setup-python.sh
nextflow="$(bash scripts/setup-nextflow.sh | tail -n 1)"

# Processes run the pertcontrast command on PATH when no container profile is given.
export PATH="$root/.venv/bin:$PATH"
# Nextflow's live progress display only makes sense on a terminal; logs get one line per task.
[[ -t 1 ]] || export NXF_ANSI_LOG=false
"$nextflow" run . -profile test --outdir results "$@" </dev/null
