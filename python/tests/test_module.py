"""The Pyro model/guide and the objective: shapes, the Wasserstein term, and that the
ELBO is exactly Pyro's TraceMeanField_ELBO."""

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from pertcontrast.module.contrastive import Architecture
from pertcontrast.module.elbo import TermWeights, salient_wasserstein
from pertcontrast.module.vae import ContrastiveVAE


def make_batch(n=24, genes=30, covariates=3, labels=4, n_controls=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    is_control = torch.arange(n) < n_controls
    return {
        "counts": torch.poisson(torch.rand(n, genes, generator=g) * 6),
        "covariates": torch.randn(n, covariates, generator=g),
        "is_control": is_control,
        "label": torch.where(is_control, -1, torch.arange(n) % labels),
        "index": torch.arange(n),
        "stratum_weight": torch.where(is_control, 1.5, 0.75),
        "library_group": torch.arange(n) % 2,
    }


@pytest.mark.parametrize("library", ["observed", "latent"])
@pytest.mark.parametrize("likelihood", ["zinb", "nb"])
def test_elbo_equals_pyro_trace_mean_field_elbo(library, likelihood):
    arch = Architecture(n_genes=30, n_covariates=3, n_labels=4, n_library_groups=2,
                        likelihood=likelihood, library=library, n_hidden=16)
    module = ContrastiveVAE(arch, [7.0, 7.5], [0.4, 0.5])
    batch = make_batch()
    pyro.set_rng_seed(3)
    terms = module.objective(batch, 500, TermWeights())
    pyro.set_rng_seed(3)
    reference = TraceMeanField_ELBO().differentiable_loss(module.model, module.guide, batch, 500)
    assert torch.allclose(-terms.elbo, reference, rtol=1e-5)
    expected_sites = {"reconstruction", "kl_background", "kl_salient"} | ({"kl_library"} if library == "latent" else set())
    assert expected_sites <= set(terms.totals)


def test_terms_are_scaled_to_the_full_screen():
    """Doubling the screen size doubles every term's estimate (plate scale n / batch)."""
    arch = Architecture(n_genes=30, n_covariates=3, n_labels=4, n_hidden=16, dropout=0.0)
    module = ContrastiveVAE(arch).eval()
    batch = make_batch()
    pyro.set_rng_seed(0)
    small = module.objective(batch, 100, TermWeights())
    pyro.set_rng_seed(0)
    large = module.objective(batch, 200, TermWeights())
    for name in small.totals:
        assert torch.allclose(large.totals[name], 2 * small.totals[name], rtol=1e-5), name


def test_controls_have_no_salient_kl_and_perturbed_cells_no_wasserstein():
    arch = Architecture(n_genes=30, n_covariates=3, n_labels=4, n_hidden=16, dropout=0.0)
    module = ContrastiveVAE(arch).eval()
    batch = make_batch()
    all_controls = dict(batch, is_control=torch.ones(24, dtype=torch.bool), label=torch.full((24,), -1))
    terms = module.objective(all_controls, 24, TermWeights())
    assert float(terms.totals["kl_salient"]) == 0.0
    assert float(terms.totals["classification"]) == 0.0
    none_controls = dict(batch, is_control=torch.zeros(24, dtype=torch.bool), label=torch.arange(24) % 4)
    terms = module.objective(none_controls, 24, TermWeights())
    assert float(terms.totals["wasserstein"]) == 0.0
    assert float(terms.totals["kl_salient"]) > 0.0


def test_wasserstein_is_sum_of_squared_means_and_variances():
    loc = torch.tensor([[1.0, -2.0, 0.5]])
    scale = torch.tensor([[0.1, 0.2, 3.0]])
    expected = 1.0 + 4.0 + 0.25 + 0.01 + 0.04 + 9.0
    assert torch.allclose(salient_wasserstein(loc, scale), torch.tensor([expected]))


def test_wasserstein_term_in_objective_matches_direct_computation():
    arch = Architecture(n_genes=30, n_covariates=3, n_labels=4, n_hidden=16, dropout=0.0)
    module = ContrastiveVAE(arch).eval()
    batch = make_batch()
    terms = module.objective(batch, 24, TermWeights())
    encoded = module.posterior(batch["counts"], batch["covariates"])
    w2 = (encoded["salient_loc"] ** 2 + encoded["salient_scale"] ** 2).sum(-1)
    # plate scale 24/24 = 1, times each cell's stratum weight; controls only
    expected = (w2 * batch["stratum_weight"] * batch["is_control"]).sum()
    assert torch.allclose(terms.totals["wasserstein"], expected, rtol=1e-5)


def test_weights_change_only_their_terms():
    arch = Architecture(n_genes=30, n_covariates=3, n_labels=4, n_hidden=16, dropout=0.0)
    module = ContrastiveVAE(arch).eval()
    batch = make_batch()
    pyro.set_rng_seed(0)
    base = module.objective(batch, 24, TermWeights(kl=1.0, wasserstein=0.0, classification=0.0))
    pyro.set_rng_seed(0)
    heavy = module.objective(batch, 24, TermWeights(kl=1.0, wasserstein=2.0, classification=3.0))
    expected = base.objective + 2.0 * heavy.totals["wasserstein"] + 3.0 * heavy.totals["classification"]
    assert torch.allclose(heavy.objective, expected, rtol=1e-5)


def test_posterior_and_decoder_shapes():
    arch = Architecture(n_genes=30, n_covariates=3, n_labels=4, n_background=5, n_salient=7, n_hidden=16)
    module = ContrastiveVAE(arch)
    batch = make_batch()
    encoded = module.posterior(batch["counts"], batch["covariates"])
    assert encoded["background_loc"].shape == (24, 5)
    assert encoded["salient_loc"].shape == (24, 7)
    assert (encoded["salient_scale"] > 0).all()
    log_p = module.log_proportions(encoded["background_loc"], encoded["salient_loc"], batch["covariates"])
    assert log_p.shape == (24, 30)
    np.testing.assert_allclose(log_p.exp().sum(-1).numpy(), 1.0, rtol=1e-5)


@pytest.mark.parametrize("salient_linear", [True, False])
def test_salient_loadings_shift_expression_only_through_the_salient_latent(salient_linear):
    arch = Architecture(n_genes=30, n_covariates=3, n_labels=4, n_background=5, n_salient=7, n_hidden=16,
                        salient_linear=salient_linear)
    decoder = ContrastiveVAE(arch).generative.decoder
    assert hasattr(decoder, "salient_loadings") is salient_linear
    if not salient_linear:
        return
    background, covariates = torch.randn(6, 5), torch.randn(6, 3)
    salient = torch.randn(6, 7)
    with torch.no_grad():
        decoder.salient_loadings.weight.zero_()
        zero_before = decoder(torch.cat([background, torch.zeros(6, 7), covariates], -1))[0]
        shifted_before = decoder(torch.cat([background, salient, covariates], -1))[0]
        decoder.salient_loadings.weight[3, 0] = 2.0
        zero_after = decoder(torch.cat([background, torch.zeros(6, 7), covariates], -1))[0]
        shifted_after = decoder(torch.cat([background, salient, covariates], -1))[0]
    # with the salient latent at 0 (controls) the loadings change nothing
    torch.testing.assert_close(zero_before, zero_after)
    # otherwise gene 3's logit moves by 2 * salient[:, 0] relative to the other genes
    change = (shifted_after - shifted_before)
    torch.testing.assert_close(change[:, 3] - change[:, 0], 2.0 * salient[:, 0])


@pytest.mark.parametrize("native", [False, True], ids=["torch", "c_kernel"])
@pytest.mark.parametrize("library", ["observed", "latent"])
def test_objective_gradients_equal_pyros_elbo_gradients(library, native):
    """The vectorised objective is the model/guide ELBO: same draws, same gradients.
    Pyro's trace evaluates the likelihood in torch; the C kernel's own float rounding
    (its accuracy against float64 is tested in test_likelihoods) gets a looser bound."""
    arch = Architecture(n_genes=30, n_covariates=3, n_labels=4, n_library_groups=2, library=library, n_hidden=16)
    module = ContrastiveVAE(arch, [7.0, 7.5], [0.4, 0.5], native=native)
    assert (module.generative.count_kernel is not None) is native
    batch = make_batch()
    parameters = [p for p in module.parameters() if p.requires_grad]
    pyro.set_rng_seed(5)
    ours = torch.autograd.grad(-module.objective(batch, 300, TermWeights()).elbo, parameters, allow_unused=True)
    pyro.set_rng_seed(5)
    loss = TraceMeanField_ELBO().differentiable_loss(module.model, module.guide, batch, 300)
    reference = torch.autograd.grad(loss, parameters, allow_unused=True)
    used = 0
    for got, expected in zip(ours, reference):
        if expected is None:  # the classifier is not part of the ELBO
            assert got is None or float(got.abs().max()) == 0.0
            continue
        used += 1
        torch.testing.assert_close(got, expected, rtol=1e-3 if native else 1e-4, atol=1e-4 if native else 1e-5)
    assert used > 10


def test_salient_weight_zero_hides_the_salient_latent_from_the_decoder():
    arch = Architecture(n_genes=30, n_covariates=3, n_labels=4, n_hidden=16)
    module = ContrastiveVAE(arch)
    batch = make_batch()
    salient_encoder = list(module.inference.salient_encoder.parameters())
    for weight, expect_gradient in ((0.0, False), (1.0, True)):
        terms = module.objective(batch, 24, TermWeights(kl=0.0, wasserstein=0.0, classification=0.0, salient=weight))
        grads = torch.autograd.grad(terms.totals["reconstruction"], salient_encoder, allow_unused=True)
        moved = any(g is not None and float(g.abs().max()) > 0 for g in grads)
        assert moved is expect_gradient


def test_encoder_features_from_nonzero_entries_equal_the_dense_ones():
    from pertcontrast.module.contrastive import encoder_features
    from pertcontrast.module.likelihoods import nonzero_entries

    batch = make_batch(genes=50)
    counts = batch["counts"]
    counts[3] = 0.0  # a cell without counts
    dense = encoder_features(counts, batch["covariates"])
    sparse = encoder_features(counts, batch["covariates"], nonzero_entries(counts))
    assert torch.equal(sparse, dense)


def test_tensor_kl_and_draws_are_torch_distributions_bit_for_bit():
    """normal_kl / normal_rsample skip the distribution objects, not a single bit."""
    from torch.distributions import Normal, kl_divergence

    from pertcontrast.module.elbo import normal_kl, normal_rsample

    generator = torch.Generator().manual_seed(3)
    loc = torch.randn(64, 10, generator=generator) * 3
    loc[0, 0] = -0.0
    scale = torch.rand(64, 10, generator=generator) * 2 + 1e-4
    prior_loc, prior_scale = torch.randn(64, 1, generator=generator), torch.rand(64, 1, generator=generator) + 0.1
    assert torch.equal(normal_kl(loc, scale), kl_divergence(Normal(loc, scale), Normal(0.0, 1.0)).sum(-1))
    assert torch.equal(
        normal_kl(loc, scale, prior_loc, prior_scale),
        kl_divergence(Normal(loc, scale), Normal(prior_loc, prior_scale)).sum(-1),
    )
    draws = []
    for draw in (lambda l, s: Normal(l, s).rsample(), normal_rsample):
        leaf_loc, leaf_scale = loc.clone().requires_grad_(), scale.clone().requires_grad_()
        torch.manual_seed(11)
        value = draw(leaf_loc, leaf_scale)
        (value.pow(3).sum() + normal_kl(leaf_loc, leaf_scale).sum()).backward()
        draws.append((value.detach(), leaf_loc.grad, leaf_scale.grad))
    for ours, reference in zip(*draws):
        assert torch.equal(ours, reference)
