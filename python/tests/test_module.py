"""The Pyro model/guide pair and the ELBO Pyro computes from it: the value against the
analytic one on a fixed draw, the named terms, their scales and weights."""

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from torch.distributions import Normal, kl_divergence

from pertcontrast.module.contrastive import (
    Architecture,
    ContrastiveModule,
    TermWeights,
    encoder_features,
    observed_log_library,
)
from pertcontrast.module.objective import NamedTermsELBO
from test_likelihoods import reference_log_prob


def make_batch(n=24, genes=30, covariates=3, n_controls=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    is_control = torch.arange(n) < n_controls
    counts = torch.poisson(torch.rand(n, genes, generator=g) * 6).to(dtype)
    counts[3] = 0.0  # a cell without counts
    return {
        "counts": counts.to_sparse_csr(),
        "covariates": torch.randn(n, covariates, generator=g).to(dtype),
        "is_control": is_control,
        "label": torch.where(is_control, -1, torch.arange(n) % 4),
        "index": torch.arange(n),
        "stratum_weight": torch.where(is_control, 1.5, 0.75).to(dtype),
        "library_group": torch.arange(n) % 2,
    }


def make_module(classifier=False, **arch):
    """A small module; the standard salient prior and the counts as the salient encoder's
    input unless named (the defaults' own tests: test_module_salient_options.py)."""
    arch = {"salient_prior": "standard", "salient_input": "counts", **arch}
    arch = Architecture(n_genes=30, n_covariates=3, n_labels=4, n_library_groups=2, n_hidden=16,
                        classifier=classifier, **arch)
    return ContrastiveModule(arch, [7.0, 7.5], [0.4, 0.5])


def loss_and_terms(module, batch, n_cells, weights=TermWeights(), seed=0):
    pyro.set_rng_seed(seed)
    return NamedTermsELBO().loss_and_terms(module.model, module.guide, batch, n_cells, weights)


@pytest.mark.parametrize("library", ["observed", "latent"])
@pytest.mark.parametrize("likelihood", ["zinb", "nb"])
def test_pyro_elbo_equals_the_analytic_value_on_a_fixed_draw(library, likelihood):
    """With the guide's draws fixed, Pyro's loss is, per cell and times its scale
    (n_cells / batch x stratum weight): -log p(x | latents) from the textbook density,
    the Normal KLs (the salient one for perturbed cells only) and the controls' squared
    2-Wasserstein distance, weighted."""
    module = make_module(likelihood=likelihood, library=library).double()
    batch = make_batch(dtype=torch.float64)
    n_cells, weights = 240, TermWeights(kl=0.7, wasserstein=3.0)
    loss, terms, _ = loss_and_terms(module, batch, n_cells, weights, seed=1)
    # the same draws: the guide's reparameterised samples, in its order, from the same seed
    encoded = module.inference.encode(batch["counts"], batch["covariates"])
    pyro.set_rng_seed(1)
    draws = {name: encoded[f"{name}_loc"] + torch.empty_like(encoded[f"{name}_loc"]).normal_()
             * encoded[f"{name}_scale"] for name in ("background", "salient", "library") if f"{name}_loc" in encoded}

    scale = batch["stratum_weight"] * n_cells / len(batch["index"])
    perturbed = ~batch["is_control"]
    log_library = draws["library"] if library == "latent" else observed_log_library(batch["counts"])
    salient = draws["salient"] * perturbed.unsqueeze(-1)
    decoded = module.generative.count_distribution(draws["background"], salient, batch["covariates"], log_library)
    log_p = reference_log_prob(batch["counts"].to_dense(), decoded.log_mean, decoded.dispersion, decoded.gate_logits)

    def kl(name, prior_loc=0.0, prior_scale=1.0):
        return kl_divergence(Normal(encoded[f"{name}_loc"], encoded[f"{name}_scale"]),
                             Normal(prior_loc, prior_scale)).sum(-1)

    expected = {"reconstruction": -(scale * log_p).sum(),
                "kl_background": weights.kl * (scale * kl("background")).sum(),
                "kl_salient": weights.kl * (scale * kl("salient") * perturbed).sum(),
                "wasserstein": weights.wasserstein * (scale * (~perturbed) * (
                    encoded["salient_loc"].pow(2) + encoded["salient_scale"].pow(2)).sum(-1)).sum()}
    if library == "latent":
        group = batch["library_group"]
        prior = module.generative.library_log_loc[group], module.generative.library_log_scale[group]
        expected["kl_library"] = weights.kl * (scale * kl("library", prior[0][:, None], prior[1][:, None])).sum()
    assert set(terms) == set(expected)
    for name, value in expected.items():
        assert terms[name] == pytest.approx(float(value), rel=1e-7), name
    assert float(loss) == pytest.approx(float(sum(expected.values())), rel=1e-7)


def test_terms_sum_to_the_loss_and_scale_with_the_screen():
    module = make_module(classifier=True).eval()
    batch = make_batch()
    weights = TermWeights(classification=2.0)
    loss, small, _ = loss_and_terms(module, batch, 100, weights)
    assert float(loss) == pytest.approx(sum(small.values()), rel=1e-5)
    assert small["classification"] > 0
    _, large, _ = loss_and_terms(module, batch, 200, weights)
    for name in small:  # the plate's scale is n_cells / batch size
        assert large[name] == pytest.approx(2 * small[name], rel=1e-5), name


def test_controls_have_no_salient_kl_and_perturbed_cells_no_wasserstein():
    module = make_module(classifier=True).eval()
    batch = make_batch()
    weights = TermWeights(classification=1.0)
    controls = dict(batch, is_control=torch.ones(24, dtype=torch.bool), label=torch.full((24,), -1))
    _, terms, _ = loss_and_terms(module, controls, 24, weights)
    assert terms["kl_salient"] == 0.0 and terms["classification"] == 0.0 and terms["wasserstein"] > 0
    perturbed = dict(batch, is_control=torch.zeros(24, dtype=torch.bool), label=torch.arange(24) % 4)
    _, terms, _ = loss_and_terms(module, perturbed, 24, weights)
    assert terms["wasserstein"] == 0.0 and terms["kl_salient"] > 0


def test_weights_change_only_their_terms():
    module = make_module(classifier=True).eval()
    batch = make_batch()
    _, base, _ = loss_and_terms(module, batch, 24, TermWeights(wasserstein=1.0, classification=1.0))
    _, heavy, _ = loss_and_terms(module, batch, 24, TermWeights(kl=0.5, wasserstein=2.0, classification=3.0))
    for name, factor in (("reconstruction", 1.0), ("kl_background", 0.5), ("kl_salient", 0.5),
                         ("wasserstein", 2.0), ("classification", 3.0)):
        assert heavy[name] == pytest.approx(factor * base[name], rel=1e-5), name


def test_training_uses_no_global_parameter_store():
    pyro.clear_param_store()
    module = make_module(classifier=True)
    loss, _, _ = loss_and_terms(module, make_batch(), 24, TermWeights(classification=1.0))
    loss.backward()
    assert len(pyro.get_param_store()) == 0
    with_grad = [name for name, p in module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert any(n.startswith("generative.decoder") for n in with_grad)
    assert any(n.startswith("inference.salient_encoder") for n in with_grad)
    assert any(n.startswith("inference.classifier") for n in with_grad)


def test_controls_salient_draws_never_reach_the_decoder():
    """The guide draws a salient latent for every cell; the model replaces the controls'
    with 0, so their reconstruction has no gradient towards the salient encoder."""
    module = make_module()
    batch = dict(make_batch(), is_control=torch.ones(24, dtype=torch.bool), label=torch.full((24,), -1))
    salient_encoder = list(module.inference.salient_encoder.parameters())
    pyro.set_rng_seed(0)
    guide_trace = poutine.trace(module.guide).get_trace(batch, 24)
    model_trace = poutine.trace(poutine.replay(module.model, trace=guide_trace)).get_trace(batch, 24)
    reconstruction = model_trace.nodes["counts"]["fn"].log_prob(batch["counts"]).sum()
    grads = torch.autograd.grad(reconstruction, salient_encoder, allow_unused=True)
    assert all(g is None or float(g.abs().max()) == 0 for g in grads)


def test_encoder_features_from_sparse_counts_equal_the_dense_formula():
    batch = make_batch(genes=50)
    dense = batch["counts"].to_dense()
    expected = torch.cat([torch.log1p(dense * 1e4 / dense.sum(-1, keepdim=True).clamp_min(1)), batch["covariates"]], -1)
    torch.testing.assert_close(encoder_features(batch["counts"], batch["covariates"]), expected)
    torch.testing.assert_close(encoder_features(dense, batch["covariates"]), expected)


def test_posterior_and_decoder_shapes():
    module = make_module(n_background=5, n_salient=7)
    batch = make_batch()
    encoded = module.posterior(batch["counts"], batch["covariates"])
    assert encoded["background_loc"].shape == (24, 5) and encoded["salient_loc"].shape == (24, 7)
    assert (encoded["salient_scale"] > 0).all()
    log_p = module.log_proportions(encoded["background_loc"], encoded["salient_loc"], batch["covariates"])
    assert log_p.shape == (24, 30)
    np.testing.assert_allclose(log_p.exp().sum(-1).numpy(), 1.0, rtol=1e-5)


@pytest.mark.parametrize("salient_linear", [True, False])
def test_salient_loadings_shift_expression_only_through_the_salient_latent(salient_linear):
    decoder = make_module(n_background=5, n_salient=7, salient_linear=salient_linear).generative.decoder
    assert hasattr(decoder, "salient_loadings") is salient_linear
    if not salient_linear:
        return
    background, covariates, salient = torch.randn(6, 5), torch.randn(6, 3), torch.randn(6, 7)
    with torch.no_grad():
        decoder.salient_loadings.weight.zero_()
        zero_before = decoder(torch.cat([background, torch.zeros(6, 7), covariates], -1))[0]
        shifted_before = decoder(torch.cat([background, salient, covariates], -1))[0]
        decoder.salient_loadings.weight[3, 0] = 2.0
        zero_after = decoder(torch.cat([background, torch.zeros(6, 7), covariates], -1))[0]
        shifted_after = decoder(torch.cat([background, salient, covariates], -1))[0]
    torch.testing.assert_close(zero_before, zero_after)  # controls (salient 0): nothing changes
    torch.testing.assert_close(shifted_after - shifted_before, 2.0 * salient[:, :1] * (torch.arange(30) == 3))
