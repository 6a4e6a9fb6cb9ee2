"""pertcontrast.progress: a bar on a terminal, plain lines anywhere else."""

from __future__ import annotations

import io
import re
import sys

import pytest

from pertcontrast import progress
from pertcontrast.progress import LineProgress, NoProgress, clock, progress_bar, track


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture()
def fake_clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(progress.time, "monotonic", fake)
    return fake


def test_epoch_lines_name_the_epoch_steps_losses_elapsed_and_eta(fake_clock):
    lines = []
    bar = LineProgress(total=100, desc="train", unit="step", initial=0, interval=30, write=lines.append)
    for _ in range(50):
        fake_clock.now += 0.2  # 10 s for 50 steps
        bar.update(1)
    bar.report(epoch="1/2", train_loss=412.3456, validation_loss=420.0)
    assert lines == ["train: epoch 1/2, step 50/100 (50%), train loss 412.3, validation loss 420, "
                     "elapsed 0:00:10, ETA 0:00:10"]


def test_long_passes_write_a_line_every_interval_with_the_latest_figures(fake_clock):
    lines = []
    bar = LineProgress(total=1000, desc="train", unit="step", interval=30, write=lines.append)
    for step in range(1, 501):
        fake_clock.now += 0.125  # a line every 240 steps
        bar.set_postfix(loss=f"{step:.4g}", epoch=1)
        bar.update(1)
    assert [re.sub(r", elapsed.*", "", line) for line in lines] == [
        "train: epoch 1, step 240/1000 (24%), loss 240",
        "train: epoch 1, step 480/1000 (48%), loss 480",
    ]
    assert lines[0].endswith("elapsed 0:00:30, ETA 0:01:35")


def test_the_eta_counts_only_this_runs_steps_after_a_resume(fake_clock):
    lines = []
    bar = LineProgress(total=100, desc="train", unit="step", initial=80, write=lines.append)
    for _ in range(10):
        fake_clock.now += 1.0
        bar.update(1)
    bar.report(epoch="9/10")
    assert lines[-1].endswith("step 90/100 (90%), elapsed 0:00:10, ETA 0:00:10")


def test_track_writes_the_last_block_once(fake_clock):
    lines = []
    assert list(track(range(3), "latents", "block", write=lines.append)) == [0, 1, 2]
    assert lines == ["latents: block 3/3 (100%), elapsed 0:00:00, ETA 0:00:00"]
    assert list(track([], "latents", "block", write=lines.append)) == [] and len(lines) == 1


def test_lines_without_a_terminal_and_a_bar_on_one(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    assert isinstance(progress_bar(10, "train", "step"), LineProgress)
    assert isinstance(progress_bar(10, "train", "step", enabled=False), NoProgress)
    monkeypatch.setattr(stream, "isatty", lambda: True, raising=False)
    bar = progress_bar(10, "train", "step")
    assert type(bar).__name__ == "_Bar"
    bar.update(10)
    bar.report(epoch="1/1", train_loss=1.5)
    bar.close()
    assert "\r" in stream.getvalue() and "train_loss=1.5" in stream.getvalue()
    # lines sent to a logger never become a bar
    assert isinstance(progress_bar(10, "preprocess", "block", write=print), LineProgress)


def test_clock():
    assert clock(0) == "0:00:00" and clock(3725.4) == "1:02:05" and clock(float("nan")) == "?"


def test_chunk_wise_preprocessing_logs_a_line_per_pass_and_block(tiny_screen, tmp_path, caplog):
    import logging

    from pertcontrast.data.preprocess import PreprocessSettings
    from pertcontrast.data.preprocess import preprocess_h5ad

    path = tmp_path / "screen.h5ad"
    tiny_screen.write_h5ad(path)
    settings = PreprocessSettings("perturbation", "control", batch_key="batch")
    with caplog.at_level(logging.INFO, logger="pertcontrast"):
        preprocess_h5ad(path, tmp_path / "prepared.h5ad", settings, chunk_size=tiny_screen.n_obs // 4 + 1)
    messages = [record.getMessage() for record in caplog.records]
    assert [m[:9] for m in messages if m.startswith("pass ")] == [f"pass {k}/5:" for k in (1, 2, 3, 4, 5)]
    blocks = [m for m in messages if m.startswith("preprocess: block ")]
    # the passes over the counts end with their last block (lines in between: at most every 15 s)
    assert len([m for m in blocks if m.startswith("preprocess: block 4/4 (100%), elapsed ")]) >= 3
