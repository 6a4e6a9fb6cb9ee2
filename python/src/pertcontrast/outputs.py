"""Before a command writes: its output path is checked (never an input, nor holding one;
a writable folder; room for a rough size estimate) and locked, so two runs never write one
output at once and a killed run's hidden temporaries are cleaned up by the next."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pertcontrast.errors import OutputPathError
from pertcontrast.io import recover_dir, remove_stale_temporaries

MIN_FREE_BYTES = 1 << 20


@dataclass(frozen=True)
class PlannedOutput:
    path: Path
    folder: bool  # a folder output (model, de/, report/) rather than one file
    name: str = "output"  # how the caller names it (the CLI: the flag)


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_output_path(output: PlannedOutput, inputs: list[Path], estimate_bytes: int = 0) -> None:
    """Raise :class:`OutputPathError` naming ``output`` when it cannot be written safely."""
    path = Path(os.path.abspath(output.path))
    label = f"{output.name} {output.path}"
    for source in inputs:
        source = Path(os.path.realpath(source))
        target = Path(os.path.realpath(path))
        if target == source or (path.exists() and source.exists() and os.path.samefile(path, source)):
            raise OutputPathError(f"{label} is also an input; write to another path (inputs are never replaced).")
        if _within(target, source) and source.is_dir():
            raise OutputPathError(f"{label} lies inside the input folder {source}; write it elsewhere.")
        if _within(source, target):
            raise OutputPathError(f"{label} holds the input {source}; replacing it would lose that input. "
                                  "Write it elsewhere.")
    if path.exists() and path.is_dir() != output.folder:
        kind = "a folder" if path.is_dir() else "a file"
        raise OutputPathError(f"{label} is {kind}; give the path of {'a folder' if output.folder else 'a file'}.")
    ancestor = _existing_ancestor(path.parent)
    if not ancestor.is_dir():
        raise OutputPathError(f"{label}: {ancestor} is a file, not a folder; fix the path.")
    _probe_writable(ancestor, label)
    free = shutil.disk_usage(ancestor).free
    needed = max(MIN_FREE_BYTES, int(estimate_bytes))
    if free < needed:
        raise OutputPathError(f"{label}: only {_mb(free)} free on the disk of {ancestor}, about {_mb(needed)} "
                              "needed; free some space or write elsewhere.")


def _probe_writable(folder: Path, label: str) -> None:
    """Create and delete a hidden file: the only test that also holds for root, ACLs and
    read-only mounts."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".pertcontrast-write-test.", dir=folder)
    except OSError as error:
        reason = describe_os_error(error)
        raise OutputPathError(f"{label}: cannot write in {folder} ({reason}); choose a writable folder.") from error
    os.close(fd)
    os.unlink(probe)


def describe_os_error(error: OSError) -> str:
    return {
        errno.ENOSPC: "no space left on the disk",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
    }.get(error.errno, error.strerror or type(error).__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """An exclusive lock on one output, held with ``fcntl`` on ``.NAME.lock`` beside it
    (outside the output, so it survives a folder swap). The file holds the owner's PID: a
    lock file whose PID is gone is stale and taken over (on file systems without
    ``fcntl`` locks the PID is the only test)."""

    def __init__(self, output: PlannedOutput):
        self.output = output
        path = Path(os.path.abspath(output.path))
        self.path = path.with_name(f".{path.name}.lock")
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                if error.errno in (errno.EAGAIN, errno.EACCES):
                    self._refuse(self._owner())
                if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                owner = self._owner()  # no fcntl locks here: the PID decides
                if owner and owner != os.getpid() and _pid_alive(owner):
                    self._refuse(owner)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            # the file may have been removed by the previous owner's release: lock the live one
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        remove_stale_temporaries(self.output.path)
        if self.output.folder:
            recover_dir(self.output.path)
        return self

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _refuse(self, owner: int | None):
        who = f"another pertcontrast (PID {owner})" if owner else "another pertcontrast"
        raise OutputPathError(f"{self.output.name} {self.output.path} is being written by {who}; wait for it to "
                              f"finish or write elsewhere (lock: {self.path}).")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
