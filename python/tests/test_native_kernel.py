"""The C count-likelihood kernel (module/native) against float64 torch: values and
gradients, extreme inputs, its build cache, and the fallback to torch."""

import copy
import dataclasses
import pickle

import pytest
import torch
from torch.nn import functional as F

from pertcontrast.module.likelihoods import (
    _CountLogLikelihood,
    count_distribution_from_logits,
    nonzero_entries,
)
from pertcontrast.module.native import CACHE_VARIABLE, DISABLE_VARIABLE, CountKernel, build_count_kernel
from pertcontrast.module.vae import Architecture, ContrastiveVAE


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    built = build_count_kernel()
    # this project's CI machines have a C compiler: a missing kernel is a failure here
    assert isinstance(built, CountKernel), "the C kernel did not build (is a C compiler on PATH?)"
    return built


def _screen_block(n_cells=40, n_genes=300, seed=0):
    """Logits, log library, gate logits, dispersion and counts drawn from the model."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n_cells, n_genes, generator=generator) * 1.5
    log_library = torch.log(torch.randint(500, 20000, (n_cells, 1), generator=generator).float())
    gate = torch.randn(n_cells, n_genes, generator=generator) * 2.0 - 2.0
    dispersion = torch.rand(n_genes, generator=generator) * 5.0 + 0.05
    mean = torch.exp(log_library + F.log_softmax(logits, -1))
    gamma = torch.distributions.Gamma(dispersion, dispersion / mean).sample()
    counts = torch.poisson(gamma, generator=generator)
    counts *= torch.rand(n_cells, n_genes, generator=generator) > torch.sigmoid(gate)
    counts[0] = 0.0  # a cell without counts
    counts[1, :3] = torch.tensor([90.0, 400.0, 2.5])  # beyond the count tables, and fractional
    return logits, log_library, gate, dispersion, counts


def _evaluate(block, likelihood, kernel, dtype=torch.float32, weights=None):
    """Per-cell log-likelihood and gradients (logits, log library, gate, dispersion)."""
    *parameters, counts = block
    logits, log_library, gate, dispersion = (t.to(dtype).clone().requires_grad_() for t in parameters)
    counts = counts.to(dtype)
    distribution = count_distribution_from_logits(logits, log_library, dispersion, gate, likelihood,
                                                  nonzero_entries(counts), kernel)
    per_cell = distribution.log_prob(counts)
    weights = torch.ones_like(per_cell) if weights is None else weights.to(dtype)
    grads = torch.autograd.grad((per_cell * weights).sum(), [logits, log_library, gate, dispersion], allow_unused=True)
    return [per_cell.detach()] + [torch.zeros(1, dtype=dtype) if g is None else g for g in grads]


def _backward_names(tensor, depth=4):
    """Names of the first few autograd nodes behind ``tensor``."""
    names, node = [], tensor.grad_fn
    while node is not None and len(names) < depth:
        names.append(type(node).__name__)
        node = node.next_functions[0][0] if node.next_functions else None
    return names


def _relative_error(got, reference):
    return float((got.double() - reference).abs().max() / reference.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("likelihood", ["zinb", "nb"])
def test_kernel_values_and_gradients_match_float64(kernel, likelihood):
    block = _screen_block()
    weights = torch.linspace(0.5, 3.0, block[0].shape[0])
    native = _evaluate(block, likelihood, kernel, weights=weights)
    reference = _evaluate(block, likelihood, None, torch.float64, weights=weights)
    torch_float32 = _evaluate(block, likelihood, None, weights=weights)
    names = ["value", "logits", "log_library", "gate", "dispersion"]
    for name, got, expected, plain in zip(names, native, reference, torch_float32):
        if name == "gate" and likelihood == "nb":
            assert float(got.abs().max()) == 0.0
            continue
        error = _relative_error(got, expected)
        # float32 rounding, and no worse than torch's own float32 evaluation allows
        assert error < max(2e-5, 4 * _relative_error(plain, expected)), (name, error)


def test_kernel_is_what_the_distribution_uses_on_cpu(kernel):
    logits, log_library, gate, dispersion, counts = _screen_block(8, 50)
    logits.requires_grad_()
    with_kernel = count_distribution_from_logits(logits, log_library, dispersion, gate, "zinb", kernel=kernel)
    without = count_distribution_from_logits(logits, log_library, dispersion, gate, "zinb", kernel=None)
    assert _backward_names(with_kernel.log_prob(counts))[0].startswith("_NativeCountLogLikelihood")
    assert not any(name.startswith("_Native") for name in _backward_names(without.log_prob(counts)))
    # float64 is not the kernel's: torch evaluates it
    in_float64 = count_distribution_from_logits(logits.double(), log_library.double(), dispersion.double(),
                                                gate.double(), "zinb", kernel=kernel)
    assert in_float64.log_prob(counts.double()).dtype == torch.float64


def test_kernel_without_gradients_gives_the_same_values(kernel):
    block = _screen_block(12, 80)
    logits, log_library, gate, dispersion, counts = block
    with torch.no_grad():
        quiet = count_distribution_from_logits(logits, log_library, dispersion, gate, "zinb", kernel=kernel).log_prob(counts)
    loud = _evaluate(block, "zinb", kernel)[0]
    torch.testing.assert_close(quiet, loud, rtol=0, atol=0)


def test_kernel_stays_finite_and_accurate_at_extreme_inputs(kernel):
    """Means far above the dispersion (d > 80), saturated gates, a dominant gene."""
    logits, log_library, gate, dispersion, counts = _screen_block(6, 60)
    logits[0, 0], log_library[0] = 60.0, 40.0  # mu / theta about e^40 on one gene
    gate[1] = 60.0
    gate[2] = -60.0
    dispersion[5] = 1e-3
    counts[0, 0] = 1e6
    block = (logits, log_library, gate, dispersion, counts)
    native = _evaluate(block, "zinb", kernel)
    reference = _evaluate(block, "zinb", None, torch.float64)
    torch_float32 = _evaluate(block, "zinb", None)
    for got, expected, plain in zip(native, reference, torch_float32):
        assert torch.isfinite(got).all()
        # lgamma(1e6 + theta) in float32 is off by about 0.4 in either implementation
        assert _relative_error(got, expected) < max(1e-4, 2 * _relative_error(plain, expected))


def test_kernel_refuses_entries_out_of_row_order(kernel):
    logits, log_library, gate, dispersion, counts = _screen_block(5, 20)
    entries = nonzero_entries(counts)
    backwards = {name: getattr(entries, name).flip(0) for name in ("flat", "rows", "cols", "counts", "table_index")}
    shuffled = dataclasses.replace(entries, **backwards)
    distribution = count_distribution_from_logits(logits, log_library, dispersion, gate, "zinb", shuffled, kernel)
    with pytest.raises(RuntimeError, match="row order"):
        distribution.log_prob(counts)


def test_kernel_survives_copies_and_pickling(kernel):
    arch = Architecture(n_genes=20, n_covariates=2, n_labels=3, n_hidden=8)
    module = ContrastiveVAE(arch)
    assert isinstance(module.generative.count_kernel, CountKernel)
    copied = copy.deepcopy(module)
    assert copied.generative.count_kernel.path == module.generative.count_kernel.path
    assert pickle.loads(pickle.dumps(kernel)).path == kernel.path


def test_kernel_can_be_turned_off_and_torch_runs_instead(monkeypatch, tmp_path):
    monkeypatch.setenv(DISABLE_VARIABLE, "0")
    assert build_count_kernel() is None
    assert ContrastiveVAE(Architecture(n_genes=20, n_covariates=2, n_labels=3, n_hidden=8)).generative.count_kernel is None
    monkeypatch.delenv(DISABLE_VARIABLE)
    monkeypatch.setenv("CC", "/nonexistent/cc")  # a compiler that fails: torch, no error
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path))
    assert build_count_kernel() is None
    assert list(tmp_path.iterdir()) == []  # nothing half-built is left


def test_kernel_is_built_once_into_its_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path))
    first = build_count_kernel()
    assert first is not None and first.path.parent == tmp_path
    stamp = first.path.stat().st_mtime_ns
    second = build_count_kernel()
    assert second.path == first.path and second.path.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]  # no partial files left


def test_kernel_is_not_loaded_from_a_folder_others_can_write(monkeypatch, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv(CACHE_VARIABLE, str(shared))
    assert build_count_kernel() is None
    assert list(shared.iterdir()) == []


def test_training_records_the_likelihood_path_and_warns_without_the_kernel(tiny_prepared, monkeypatch, tmp_path, caplog):
    from pertcontrast.model import ContrastiveModel

    model = ContrastiveModel.from_anndata(tiny_prepared, n_hidden=16)
    model.train(max_epochs=1, batch_size=128, progress=False, device="cpu")
    assert model.training["count_likelihood"] == "C kernel"
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path))
    slow = ContrastiveModel.from_anndata(tiny_prepared, n_hidden=16)
    with caplog.at_level("WARNING", logger="pertcontrast"):
        slow.train(max_epochs=1, batch_size=128, progress=False, device="cpu")
    assert slow.training["count_likelihood"] == "torch"
    assert any("could not be built" in record.getMessage() for record in caplog.records)
