#!/usr/bin/env bash
# The GPU check: on one H100/H200, in under 8 minutes with the data creation, prints
#   - an epoch over 1,000,000 cells x 2,000 genes with the fastest settings (counts resident on
#     the GPU, bf16-mixed, 8,192 cells per step) and with the defaults: seconds, cells/s, peak
#     GPU memory;
#   - the export of those cells;
#   - scvi-tools' ContrastiveVI on the same GPU, same architecture and cells per step:
#     cells/s and the ratio (needs pip install -e './python[benchmark]'; said when absent).
#
#   bash benchmarks/gpu_check.sh              # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run    # the same steps at tiny sizes on the CPU (the suite runs it)
# PERTCONTRAST_GPU_CHECK_DRY_RUN=1 is the same as --dry-run; other options: python benchmarks/gpu_check.py --help.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
if [[ -z "${PYTHON:-}" && -x "$root/.venv/bin/python" ]]; then
    python="$root/.venv/bin/python"
fi
args=("$@")
if [[ "${PERTCONTRAST_GPU_CHECK_DRY_RUN:-0}" == 1 ]]; then
    args+=(--dry-run)
fi
exec "$python" "$root/benchmarks/gpu_check.py" "${args[@]}"
