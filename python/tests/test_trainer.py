"""The training loop: warm-up in steps, checkpoints that resume to the same result, and a
clear stop with the last good checkpoint kept when the loss becomes NaN."""

import numpy as np
import pytest
import torch

from pertcontrast.data.loader import CellArrays, CountRows
from pertcontrast.errors import TrainingDivergedError
from pertcontrast import ContrastiveModel
from pertcontrast.train.checkpoint import load_checkpoint
from pertcontrast.train.schedule import EarlyStopping, warmup_factor
from pertcontrast.train.settings import TrainingSettings
from pertcontrast.train.trainer import Trainer, TrainingData, split_cells


def make_trainer(prepared, checkpoint_file=None, callbacks=(), **overrides):
    model = ContrastiveModel.from_anndata(prepared, n_hidden=16, seed=1)
    settings = TrainingSettings(**{"batch_size": 128, "seed": 3, **overrides})
    cells = CellArrays.from_encoded(model.encoding.encode_obs(prepared.obs))
    split = split_cells(cells.is_control, settings.validation_fraction, 0.0, settings.seed)
    data = TrainingData(CountRows(prepared.X), cells, split["train"], split["validation"])
    return Trainer(model.module, data, settings, torch.device("cpu"), checkpoint_file, callbacks, progress=False)


def test_warmup_is_counted_in_steps():
    assert warmup_factor(0, 100) == 0.01  # never 0: it scales Pyro sites
    assert warmup_factor(49, 100) == 0.5
    assert warmup_factor(500, 100) == 1.0
    assert warmup_factor(3, 0) == 1.0
    assert TrainingSettings(max_epochs=2).resolve_warmup(10_000) == 1000
    assert TrainingSettings(warmup_steps=7).resolve_warmup(10_000) == 7


def test_early_stopping_counts_checks_without_improvement():
    stopper = EarlyStopping(patience=2)
    assert stopper.update(10.0, 0)
    assert not stopper.update(10.5, 1)
    assert not stopper.should_stop
    assert not stopper.update(11.0, 2)
    assert stopper.should_stop and stopper.best_epoch == 0


def test_killed_training_resumes_from_its_checkpoint_to_the_same_result(tiny_prepared, tmp_path):
    straight = make_trainer(tiny_prepared, max_epochs=4)
    straight.fit()

    class Killed(Exception):
        pass

    def kill_after_second_epoch(row):
        if row["epoch"] == 2:
            raise Killed

    checkpoint = tmp_path / "checkpoint.pt"
    interrupted = make_trainer(tiny_prepared, checkpoint, (kill_after_second_epoch,), max_epochs=4)
    with pytest.raises(Killed):
        interrupted.fit()
    assert load_checkpoint(checkpoint)["next_epoch"] == 2

    resumed = make_trainer(tiny_prepared, checkpoint, max_epochs=4)
    result = resumed.fit()
    assert result.resumed_from_epoch == 2
    assert len(result.history) == 4
    for name, value in straight.module.state_dict().items():
        torch.testing.assert_close(resumed.module.state_dict()[name], value, rtol=0, atol=0)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tiny_prepared, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    trainer = make_trainer(tiny_prepared, checkpoint, max_epochs=5)
    loss = trainer._loss
    steps_per_epoch = trainer.steps_per_epoch

    def poisoned(batch, n_cells, weights):
        objective, terms, encoded = loss(batch, n_cells, weights)
        if trainer.step >= steps_per_epoch + 1:  # inside the second epoch
            objective = objective * float("nan")
        return objective, terms, encoded

    trainer._loss = poisoned
    with pytest.raises(TrainingDivergedError) as error:
        trainer.fit()
    message = str(error.value)
    assert "NaN/inf at epoch 2" in message
    assert "last good checkpoint (epoch 1)" in message and str(checkpoint) in message
    assert "a lower learning_rate (now" in message and "or likelihood=nb" in message and "{param" not in message
    state = load_checkpoint(checkpoint)
    assert state["next_epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["module"].values() if v.is_floating_point())


def test_validation_split_is_stratified_and_disjoint():
    is_control = np.arange(1000) < 200
    split = split_cells(is_control, 0.1, 0.25, seed=0)
    train, validation, decoy = split["train"], split["validation"], split["decoy"]
    assert len(np.union1d(np.union1d(train, validation), decoy)) == len(train) + len(validation) + len(decoy) == 1000
    assert is_control[decoy].all() and len(decoy) == 50  # a quarter of the 200 controls
    assert is_control[validation].sum() == 15 and (~is_control[validation]).sum() == 80


def test_device_resident_batches_equal_host_batches(tiny_prepared):
    """The resident path (used on CUDA when the counts fit) builds the same minibatches."""
    from pertcontrast.data.loader import DeviceResidentCounts, make_batch

    host = make_trainer(tiny_prepared, max_epochs=1, resident="off")
    resident = DeviceResidentCounts(tiny_prepared.X, host.data.cells, torch.device("cpu"))
    rows = np.array([5, 1, 400, 2, 2, 999])
    weights = np.linspace(0.5, 2.0, len(rows))
    a = make_batch(host.data.counts, host.data.cells, rows, weights, rows, torch.device("cpu"))
    b = resident.batch(rows, weights, rows)
    assert set(a) == set(b)
    for name in a:
        if name == "counts":
            assert b[name].layout == torch.sparse_csr
            torch.testing.assert_close(a[name].to_dense(), b[name].to_dense(), rtol=0, atol=0)
        else:
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_resident_and_prefetch_paths_train_to_identical_weights(tiny_prepared):
    results = []
    for options in ({"resident": "off", "prefetch": False}, {"resident": "on"}, {"resident": "off", "prefetch": True}):
        trainer = make_trainer(tiny_prepared, max_epochs=2, **options)
        trainer.fit()
        results.append(trainer.module.state_dict())
    for other in results[1:]:
        for name, value in results[0].items():
            torch.testing.assert_close(other[name], value, rtol=0, atol=0)


def test_out_of_core_training_equals_in_memory_training(tiny_prepared, tmp_path):
    """Counts read from a backed file in shuffled blocks train exactly as the same plan in
    memory; only the storage differs."""
    import anndata as ad

    path = tmp_path / "prepared.h5ad"
    tiny_prepared.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    states = []
    for adata in (tiny_prepared, backed):
        model = ContrastiveModel.from_anndata(adata, n_hidden=16, seed=2)
        model.train(max_epochs=2, batch_size=64, seed=4, sampling="buffered", progress=False, device="cpu")
        states.append((model.module.state_dict(), model.latents(adata, device="cpu", batch_size=100)["salient"]))
    for name, value in states[0][0].items():
        torch.testing.assert_close(states[1][0][name], value, rtol=0, atol=0)
    np.testing.assert_array_equal(states[0][1], states[1][1])


def test_buffered_epochs_cover_every_training_cell_with_unbiased_weights(tiny_prepared):
    from pertcontrast.data.loader import ShuffleBufferEpoch

    trainer = make_trainer(tiny_prepared, max_epochs=1)
    data = trainer.data
    epoch = ShuffleBufferEpoch(data.counts, data.cells, data.train_rows, 64, 0.3, np.random.default_rng(0),
                               block_rows=100, blocks_per_buffer=3)
    seen = set()
    n_batches = 0
    for buffer_counts, cells, local, weights, rows in epoch:
        n_batches += 1
        assert set(rows) <= set(data.train_rows)
        np.testing.assert_array_equal(buffer_counts.dense(local), data.counts.dense(rows))
        seen.update(rows.tolist())
        plate_scale = len(data.train_rows) / len(rows)
        n_control = cells.is_control[local].sum()
        total_controls = data.cells.is_control[data.train_rows].sum()
        np.testing.assert_allclose(plate_scale * weights[cells.is_control[local]], total_controls / n_control)
    assert n_batches == epoch.steps
    # every perturbed training cell is drawn in its buffer (controls cycle within buffers)
    perturbed = set(data.train_rows[~data.cells.is_control[data.train_rows]].tolist())
    assert perturbed <= seen


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e6])
def test_clip_gradients_equals_torch_clip_grad_norm(max_norm):
    from pertcontrast.train.trainer import clip_gradients

    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(5, 4, generator=g), torch.randn(7, generator=g)]
    ours = [torch.zeros_like(x, requires_grad=True) for x in grads]
    theirs = [torch.zeros_like(x, requires_grad=True) for x in grads]
    for p, q, grad in zip(ours, theirs, grads):
        p.grad, q.grad = grad.clone(), grad.clone()
    clip_gradients(ours, max_norm)
    torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    for p, q in zip(ours, theirs):
        assert torch.equal(p.grad, q.grad)
    total = torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in ours]))
    assert float(total) <= max_norm * (1 + 1e-5) or max_norm == 1e6
