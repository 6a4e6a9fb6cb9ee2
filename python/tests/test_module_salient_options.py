"""The two salient options of the architecture: a prior that knows each cell's
perturbation (``salient_prior="perturbation"``) and a salient encoder that reads what the
decoded background leaves (``salient_input="residual"``)."""

import math

import numpy as np

import pyro
import pytest
import torch
from torch.distributions import Normal

from pertcontrast.module.contrastive import NORMALISED_TOTAL, Architecture, encoder_features
from test_module import loss_and_terms, make_batch, make_module


def test_the_perturbation_prior_is_half_at_zero_half_at_the_perturbations_centre():
    """kl_salient is, per perturbed cell and times its scale, log q(z) - log p(z) on the
    guide's draw, p = 0.5 N(0, I) + 0.5 N(centre of its perturbation, I); decoy controls
    (perturbed in training, label -1) share the last centre; controls have none."""
    module = make_module(salient_prior="perturbation").double()
    with torch.no_grad():
        centres = torch.randn(module.generative.salient_centres.shape, generator=torch.Generator().manual_seed(0))
        module.generative.salient_centres.copy_(2 * centres)
    batch = make_batch(dtype=torch.float64)
    batch["is_control"] = batch["is_control"].clone()
    batch["is_control"][0] = False  # a decoy: trained as perturbed, no perturbation label
    n_cells = 240
    _, terms, _ = loss_and_terms(module, batch, n_cells, seed=3)

    encoded = module.inference.encode(batch["counts"], batch["covariates"])
    pyro.set_rng_seed(3)
    draws = {name: encoded[f"{name}_loc"] + torch.empty_like(encoded[f"{name}_loc"]).normal_()
             * encoded[f"{name}_scale"] for name in ("background", "salient")}
    z = draws["salient"]
    row = torch.where(batch["label"] >= 0, batch["label"], torch.full_like(batch["label"], 4))
    centres = module.generative.salient_centres[row]
    log_p = torch.logsumexp(torch.stack([Normal(0.0, 1.0).log_prob(z).sum(-1),
                                         Normal(centres, 1.0).log_prob(z).sum(-1)]), dim=0) - math.log(2)
    log_q = Normal(encoded["salient_loc"], encoded["salient_scale"]).log_prob(z).sum(-1)
    scale = batch["stratum_weight"] * n_cells / len(batch["index"])
    perturbed = ~batch["is_control"]
    assert terms["kl_salient"] == pytest.approx(float((scale * (log_q - log_p) * perturbed).sum().detach()),
                                                rel=1e-6)
    assert module.generative.salient_centres.shape == (5, module.arch.n_salient)


def test_the_perturbation_prior_moves_the_centres_and_the_standard_one_has_none():
    module = make_module(salient_prior="perturbation")
    loss, _, _ = loss_and_terms(module, make_batch(), 24)
    loss.backward()
    grad = module.generative.salient_centres.grad
    assert grad is not None and grad[:4].abs().sum() > 0  # the four perturbations of the batch
    assert not hasattr(make_module().generative, "salient_centres")


def test_the_residual_input_reads_the_decoded_background_without_training_the_decoder_through_it():
    module = make_module(salient_input="residual").double()
    batch = make_batch(dtype=torch.float64)
    encoded = module.inference.encode(batch["counts"], batch["covariates"])
    features = encoder_features(batch["counts"], batch["covariates"])
    decoded = module.generative.background_log_proportions(encoded["background_loc"], batch["covariates"])
    expected_input = torch.cat([features[:, :30] - torch.log1p(decoded.exp() * NORMALISED_TOTAL),
                                batch["covariates"]], dim=-1)
    loc, scale = module.inference.salient_encoder(expected_input)
    torch.testing.assert_close(encoded["salient_loc"], loc)
    torch.testing.assert_close(encoded["salient_scale"], scale)
    # the decoder learns from the model's likelihood only, not from what the guide reads
    encoded["salient_loc"].sum().backward()
    assert all(p.grad is None for p in module.generative.decoder.parameters())
    assert module.inference.background_encoder.loc.weight.grad is None
    # a different background fit changes what the salient encoder sees
    with torch.no_grad():
        module.generative.decoder.proportion_logits.bias.add_(torch.linspace(-1, 1, 30, dtype=torch.float64))
    moved = module.inference.encode(batch["counts"], batch["covariates"])["salient_loc"]
    assert not torch.allclose(moved, encoded["salient_loc"])


def test_the_residual_input_trains_end_to_end():
    module = make_module(salient_input="residual", salient_prior="perturbation")
    loss, terms, _ = loss_and_terms(module, make_batch(), 24)
    assert math.isfinite(float(loss.detach())) and float(loss.detach()) == pytest.approx(sum(terms.values()), rel=1e-5)


@pytest.mark.parametrize("field, value", [("salient_prior", "label"), ("salient_input", "raw")])
def test_unknown_salient_options_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        Architecture(n_genes=3, n_covariates=0, n_labels=1, **{field: value})


def test_a_model_with_both_options_trains_saves_and_loads(tiny_prepared, tmp_path):
    from pertcontrast import ContrastiveModel

    model = ContrastiveModel.from_anndata(tiny_prepared, salient_prior="perturbation", salient_input="residual")
    model.train(progress=False, device="cpu", max_epochs=2)
    assert "per-perturbation salient prior" in repr(model) and "background residuals" in repr(model)
    model.save(tmp_path / "model")
    loaded = ContrastiveModel.load(tmp_path / "model")
    assert loaded.architecture.salient_prior == "perturbation" and loaded.architecture.salient_input == "residual"
    before, after = model.latents(tiny_prepared, device="cpu"), loaded.latents(tiny_prepared, device="cpu")
    np.testing.assert_array_equal(before["salient"], after["salient"])
    centres = loaded.module.generative.salient_centres
    assert centres.shape == (len(loaded.encoding.perturbations) + 1, loaded.architecture.n_salient)
    assert torch.equal(centres, model.module.generative.salient_centres)


def test_the_defaults_are_the_perturbation_prior_on_residuals():
    arch = Architecture(n_genes=3, n_covariates=0, n_labels=1)
    assert (arch.salient_prior, arch.salient_input) == ("perturbation", "residual")


def test_a_folder_from_before_the_options_loads_as_the_standard_prior_on_counts(tiny_prepared, tmp_path):
    import json

    from pertcontrast import ContrastiveModel

    model = ContrastiveModel.from_anndata(tiny_prepared, n_hidden=16, salient_prior="standard", salient_input="counts")
    model.train(progress=False, device="cpu", max_epochs=1)
    model.save(tmp_path / "old")
    config_file = tmp_path / "old" / "config.json"
    config = json.loads(config_file.read_text())
    for key in ("salient_prior", "salient_input"):
        del config["architecture"][key]
    config_file.write_text(json.dumps(config))
    loaded = ContrastiveModel.load(tmp_path / "old")
    assert (loaded.architecture.salient_prior, loaded.architecture.salient_input) == ("standard", "counts")
    np.testing.assert_array_equal(model.latents(tiny_prepared, device="cpu")["salient"],
                                  loaded.latents(tiny_prepared, device="cpu")["salient"])
