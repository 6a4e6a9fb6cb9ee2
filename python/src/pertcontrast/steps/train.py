from __future__ import annotations

import logging
from pathlib import Path

from pertcontrast.data.reading import read_anndata, should_read_backed
from pertcontrast.model import BaseContrastiveModel
from pertcontrast.train.settings import TrainingSettings

log = logging.getLogger("pertcontrast")


def train_file(
    input_path: str | Path,
    output: str | Path,
    settings: TrainingSettings,
    model_options: dict | None = None,
    device: str = "auto",
    checkpoint_dir: str | Path | None = None,
    callbacks=(),
    progress: bool = True,
    tracker=None,
    backed: str | bool = "auto",
):
    """Train on a prepared ``.h5ad`` and save the model folder; returns (model, result).

    ``backed``: keep the counts on disk and read them in blocks ("auto": when they would
    take more than 1 GB in memory). The checkpoint folder defaults to ``<output>/checkpoints``; a re-run with the same
    settings resumes from it, and it is removed once the model is saved. A
    :class:`~pertcontrast.tracking.TrainingTracker` (already connected) records the run:
    parameters before training, metrics every epoch, and the rest once the model folder
    is complete on disk.
    """
    on_disk = should_read_backed(input_path, backed)
    if on_disk:
        log.info("reading counts from disk in blocks (out-of-core): %s", input_path)
    adata = read_anndata(input_path, backed=on_disk)
    model = BaseContrastiveModel.from_anndata(adata, source=str(input_path), **(model_options or {}))
    output = Path(output)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else output / "checkpoints"
    if tracker is not None:
        tracker.start(model, adata, settings, input_path)
        callbacks = (*callbacks, tracker.on_epoch)
    try:
        result = model.fit(settings, device=device, checkpoint_dir=checkpoint_dir, callbacks=callbacks, progress=progress)
    except BaseException as error:
        if tracker is not None:
            tracker.fail(error)
        raise
    if result.resumed_from_epoch:
        log.info("resumed from the checkpoint after epoch %d", result.resumed_from_epoch)
    model.save(output, overwrite=True)  # the folder holds the run record and checkpoints already
    checkpoint = result.extra.get("checkpoint_file")
    if checkpoint and Path(checkpoint).exists():
        Path(checkpoint).unlink()
        try:
            Path(checkpoint).parent.rmdir()
        except OSError:
            pass
    if tracker is not None:
        tracker.finish(model, result, adata)
    return model, result
