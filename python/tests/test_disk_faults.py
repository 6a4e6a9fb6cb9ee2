"""Faults of the disk and of concurrent runs: a full disk (a 2 MB tmpfs) and a read-only
mount give one line naming the output and leave no temporaries; two runs never write one
output at once; a folder swap interrupted between its renames loses nothing; a killed
writer's hidden temporaries are removed by the next run; secrets in tags are masked; a
tampered checkpoint is refused."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_helpers import preprocess_args, run
from pertcontrast.errors import InputDataError, OutputPathError
from pertcontrast.io import atomic_dir, recover_dir
from pertcontrast.outputs import OutputLock, PlannedOutput

CLI = [sys.executable, "-m", "pertcontrast.cli"]


class Payload:
    """Not a tensor: ``weights_only`` loading refuses a checkpoint holding it."""


def _mount(folder: Path, *options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")


@pytest.fixture()
def small_disk(tmp_path):
    folder = tmp_path / "disk"
    _mount(folder, "size=2m")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)  # lazy: a leaked handle must not keep it


@pytest.fixture()
def read_only(tmp_path):
    folder = tmp_path / "ro"
    _mount(folder, "size=1m", "ro")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture(scope="module")
def raw(tiny_screen, tmp_path_factory):
    path = tmp_path_factory.mktemp("disk_faults") / "raw.h5ad"
    tiny_screen.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def prepared(tiny_prepared_file):
    return tiny_prepared_file


def run_process(args):
    """(exit code, output) of ``pertcontrast ARGS`` in its own process, as users run it.

    The writes that fail half-way go through this: when a full disk makes HDF5's close
    fail, libhdf5 keeps broken objects of that file, and a later h5py close in the same
    process segfaults (it did, in the next test file); a command's process ends there."""
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout + done.stderr


def assert_one_line(code, output, *fragments):
    assert code != 0, output
    assert "Traceback" not in output, output
    assert "Error: unexpected" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_preprocess_onto_a_disk_too_small_for_it_is_refused_before_any_work(raw, small_disk):
    code, output = run(preprocess_args(raw, small_disk / "prepared.h5ad"))
    assert_one_line(code, output, "--output", "MB free", "free some space")
    assert list(small_disk.iterdir()) == []


def test_a_disk_that_fills_while_writing_gives_one_line_and_no_leftovers(small_disk):
    """The estimate passes (1 MB), the write does not: the simulated screen takes several
    MB and a filler leaves about 1.3."""
    (small_disk / "filler").write_bytes(b"\0" * (700 * 1024))
    code, output = run_process(["simulate", "--preset", "tiny", "--n-cells", "3000", "--output",
                                str(small_disk / "big.h5ad")])
    assert_one_line(code, output, "the disk is full", "nothing was replaced")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_train_onto_a_full_disk_names_the_folder(prepared, small_disk):
    (small_disk / "filler").write_bytes(b"\0" * (900 * 1024))
    code, output = run_process(["train", str(prepared), "--output", str(small_disk / "model"), "--max-epochs",
                                "1", "--n-hidden", "512", "--no-mlflow", "--no-progress", "--device", "cpu"])
    assert_one_line(code, output, str(small_disk / "model"))
    assert "disk is full" in output or "writing failed" in output, output


@pytest.mark.parametrize("command", ["preprocess", "train", "export", "check-samplesheet", "simulate"])
def test_a_read_only_output_folder_gives_one_line(command, raw, prepared, read_only, tmp_path):
    target = read_only / "out"
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(f"id,h5ad,perturbation_key,control_label\ns1,{prepared},perturbation,control\n")
    args = {
        "preprocess": preprocess_args(raw, target),
        "train": ["train", str(prepared), "--output", str(target), "--no-mlflow"],
        "export": ["export", str(prepared), "--model", str(prepared.parent), "--output", str(target)],
        "check-samplesheet": ["check-samplesheet", str(sheet), "--output", str(target)],
        "simulate": ["simulate", "--preset", "tiny", "--output", str(target)],
    }[command]
    code, output = run(args)
    assert_one_line(code, output, str(target), "read-only file system", "choose a writable folder")


@contextlib.contextmanager
def held_elsewhere(output: Path, folder: bool):
    """The output's lock held by another process (fcntl locks are per process); yields its PID."""
    code = ("import sys; from pathlib import Path; from pertcontrast.outputs import OutputLock, PlannedOutput;"
            f"l = OutputLock(PlannedOutput(Path({str(output)!r}), {folder})).acquire(); print('held', flush=True);"
            "sys.stdin.readline(); l.release()")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.communicate("\n", timeout=60)


def test_a_second_writer_of_one_output_is_refused_naming_the_first(tmp_path, prepared):
    output = tmp_path / "model"
    with held_elsewhere(output, folder=True) as pid:
        code, text = run(["train", str(prepared), "--output", str(output), "--no-mlflow", "--max-epochs", "1"])
        assert_one_line(code, text, f"is being written by another pertcontrast (PID {pid})")
    assert not output.exists()
    assert not (tmp_path / ".model.lock").exists()  # released with the lock


def test_a_lock_file_left_by_a_dead_process_is_taken_over(tmp_path):
    output = PlannedOutput(tmp_path / "de", folder=True)
    (tmp_path / ".de.lock").write_text("999999999\n")  # no such PID, no fcntl lock held
    with OutputLock(output) as lock:
        assert lock.path.read_text().strip() == str(os.getpid())
    assert not (tmp_path / ".de.lock").exists()


def test_lock_is_exclusive_between_processes(tmp_path):
    output = tmp_path / "x.h5ad"
    with held_elsewhere(output, folder=False) as pid:
        with pytest.raises(OutputPathError, match=f"PID {pid}"):
            OutputLock(PlannedOutput(output, False)).acquire()
    with OutputLock(PlannedOutput(output, False)):  # free again once the holder is gone
        pass


def test_a_killed_writers_temporaries_are_removed_by_the_next_run(tmp_path):
    output = tmp_path / "latents.h5ad"
    leftover = tmp_path / ".latents.h5ad.abc123.tmp.h5ad"
    leftover.write_bytes(b"\0" * 1000)
    folder_leftover = tmp_path / ".latents.h5ad.def456.tmp"
    folder_leftover.mkdir()
    unrelated = tmp_path / ".other.h5ad.abc.tmp.h5ad"
    unrelated.write_text("x")
    with OutputLock(PlannedOutput(output, False)):
        assert not leftover.exists() and not folder_leftover.exists()
    assert unrelated.exists()


def test_a_swap_interrupted_between_its_renames_keeps_the_old_folder(tmp_path, monkeypatch):
    destination = tmp_path / "de"
    destination.mkdir()
    (destination / "de.csv").write_text("old")
    real_replace = os.replace

    def crash_on_second(src, dst):
        if Path(src).name.endswith(".tmp"):
            raise OSError(errno.EIO, "simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_second)
    with pytest.raises(OSError), atomic_dir(destination) as tmp:
        (tmp / "de.csv").write_text("new")
    monkeypatch.setattr(os, "replace", real_replace)
    assert (destination / "de.csv").read_text() == "old"  # put back at once
    # a hard crash (no chance to put it back) leaves .de.old; the next run restores it
    real_replace(destination, tmp_path / ".de.old")
    recover_dir(destination)
    assert (destination / "de.csv").read_text() == "old" and not (tmp_path / ".de.old").exists()
    with atomic_dir(destination) as tmp:
        (tmp / "de.csv").write_text("new")
    assert (destination / "de.csv").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["de"]


def test_secret_looking_tags_are_masked_in_the_log(prepared, tmp_path, caplog):
    from pertcontrast.cli._secrets import looks_like_secret, mask_argv

    token = "ghp_" + "A1b2C3d4" * 4
    assert looks_like_secret(token) and looks_like_secret("hunter2", key="password")
    assert not looks_like_secret("screen_01") and not looks_like_secret("/data/screens/a.h5ad")
    masked = mask_argv(["train", "--tag", f"note={token}", f"--run-name={token}", "--tag", "lane=L001"])
    assert token not in " ".join(masked) and "lane=L001" in masked
    code, output = run(["train", str(prepared), "--output", str(tmp_path / "m"), "--tag", f"api_token={token}",
                        "--tag", "novalue"])  # stops at the bad tag, after the command line is logged
    assert code != 0 and token not in output, output


def test_a_tampered_checkpoint_is_refused_not_discarded(tmp_path):
    from pertcontrast.train.checkpoint import load_checkpoint

    path = tmp_path / "checkpoint-x.pt"
    torch.save({"state": Payload()}, path)
    with pytest.raises(InputDataError, match="holds objects other than weights"):
        load_checkpoint(path)
    assert path.exists()
    damaged = tmp_path / "checkpoint-y.pt"
    damaged.write_bytes(b"garbage")
    assert load_checkpoint(damaged) is None
    assert (tmp_path / "checkpoint-y.pt.damaged").exists()
