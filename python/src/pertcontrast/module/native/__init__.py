"""C kernels for the CPU hot spots, built with the system C compiler on first use.

A training step on CPU spends most of its time in the count likelihood, and there the
time goes to passes over memory, not to arithmetic: torch evaluates it operation by
operation, a pass over the cells x genes block each. ``count_likelihood.c`` does it in
one pass per cell (see the file). It is plain C with OpenMP, compiled once per machine
into a cache folder (a second) and loaded with ctypes; without a C compiler, with
``PERTCONTRAST_NATIVE=0`` or on a GPU the torch implementation runs instead, so the
kernel is a speed-up and never a requirement.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("count_likelihood.c")
DISABLE_VARIABLE = "PERTCONTRAST_NATIVE"  # "0" turns the C kernels off
CACHE_VARIABLE = "PERTCONTRAST_CACHE"  # where built kernels are kept
# -fno-math-errno / -fno-trapping-math let the compiler vectorise the branch-free exp/log;
# no -ffast-math: NaN and infinity must keep their meaning
BASE_FLAGS = ("-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-fPIC", "-shared")
_POINTER = ctypes.c_void_p
_ARGUMENT_TYPES = (
    [ctypes.c_int64, ctypes.c_int64] + [_POINTER] * 4 + [ctypes.c_int64] + [_POINTER] * 9 + [ctypes.c_int]
)


def _pointer(tensor):
    return None if tensor is None else tensor.data_ptr()


class CountKernel:
    """The ``count_log_likelihood`` function of a built ``count_likelihood.c``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._function = ctypes.CDLL(str(self.path)).count_log_likelihood
        self._function.restype = ctypes.c_int
        self._function.argtypes = _ARGUMENT_TYPES

    def __reduce__(self):  # ctypes functions cannot be pickled or copied: load again
        return CountKernel, (self.path,)

    def __deepcopy__(self, memo):
        return self

    def __call__(self, logits, log_library, gate, dispersion, rows, cols, counts, log_factorial,
                 per_cell, grad_logits, grad_gate, grad_dispersion, grad_log_library,
                 n_threads: int) -> None:
        """Runs the kernel on contiguous CPU tensors (float32; rows and cols int64);
        see ``count_likelihood.c`` for what each one is. Raises RuntimeError when it fails."""
        n_cells, n_genes = logits.shape
        status = self._function(
            n_cells, n_genes, _pointer(logits), _pointer(log_library), _pointer(gate),
            _pointer(dispersion), rows.numel(), _pointer(rows), _pointer(cols), _pointer(counts),
            _pointer(log_factorial),
            _pointer(per_cell), _pointer(grad_logits), _pointer(grad_gate), _pointer(grad_dispersion),
            _pointer(grad_log_library), n_threads,
        )
        if status != 0:
            raise RuntimeError("count_log_likelihood: nonzero entries not in row order, or out of memory")


def _cache_folders() -> list[Path]:
    configured = os.environ.get(CACHE_VARIABLE)
    if configured:
        return [Path(configured)]
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    # a read-only home (some containers) falls back to the temporary folder
    return [Path(xdg) / "pertcontrast", Path(tempfile.gettempdir()) / f"pertcontrast-{os.getuid()}"]


def _cpu_signature() -> str:
    """What the compiled code depends on: -march=native code must not run on another CPU
    (a cache folder on a cluster's shared home is seen by several kinds of node)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith(("flags", "Features"))), "")
    except OSError:  # no /proc (macOS): the machine and processor names only
        flags = ""
    return f"{platform.machine()} {platform.processor()} {flags}"


def _private(folder: Path) -> bool:
    """Only a folder that this user owns and nobody else can write to may hold code this
    process loads (the temporary folder fallback is shared by every user)."""
    info = folder.stat()
    return info.st_uid == os.getuid() and not info.st_mode & 0o022


def _compile(compiler: str, flags: list[str], folder: Path, name: str) -> Path | None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not _private(folder):
        raise OSError(f"{folder} is writable by other users")
    target = folder / name
    if target.exists():
        return target
    handle, partial = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
    os.close(handle)
    try:
        result = subprocess.run([compiler, *flags, "-o", partial, str(SOURCE)],
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            log.debug("%s %s failed: %s", compiler, " ".join(flags), result.stderr.strip())
            return None
        os.replace(partial, target)  # another process building the same file is harmless
        return target
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def turned_off() -> bool:
    """Whether the user turned the C kernels off (``PERTCONTRAST_NATIVE=0``)."""
    return os.environ.get(DISABLE_VARIABLE, "1").strip() == "0"


def build_count_kernel() -> CountKernel | None:
    """The count-likelihood kernel, compiled into the cache folder if it is not there yet;
    None when it is turned off or cannot be built (the caller then uses torch)."""
    if turned_off():
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        log.info("no C compiler found: the count likelihood runs in torch (slower on CPU)")
        return None
    source_hash = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    for march in (["-march=native"], []):
        flags = [*BASE_FLAGS, *march]
        key = hashlib.sha256("\n".join([source_hash, compiler, *flags, _cpu_signature()]).encode()).hexdigest()
        for folder in _cache_folders():
            try:
                path = _compile(compiler, flags, folder, f"count_likelihood-{key[:20]}.so")
            except (OSError, subprocess.SubprocessError) as error:
                log.debug("building the count kernel in %s failed: %s", folder, error)
                continue
            if path is None:
                break  # the compiler refused these flags: try the next ones
            try:
                return CountKernel(path)
            except OSError as error:
                log.debug("loading %s failed: %s", path, error)
    log.info("the C count-likelihood kernel could not be built: the likelihood runs in torch")
    return None
