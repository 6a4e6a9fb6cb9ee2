"""The independence term: normalised HSIC of the salient on the background latent."""

import pytest
import torch

from pertcontrast.module.contrastive import TermWeights
from pertcontrast.module.independence import normalised_hsic
from test_module import loss_and_terms, make_batch, make_module


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def test_hsic_is_about_0_for_independent_latents_and_sees_non_linear_dependence():
    g = _generator()
    background = torch.randn(300, 4, generator=g)
    independent = normalised_hsic(torch.randn(300, 2, generator=g), background)
    assert abs(float(independent)) < 0.03
    angle = torch.rand(300, generator=g) * 6.283
    cycle = torch.stack([angle.cos(), angle.sin()], 1)
    # a salient latent that holds the phase only through cos(2 angle): uncorrelated with
    # both of the cycle's coordinates, still dependent
    folded = torch.stack([(2 * angle).cos(), 0.1 * torch.randn(300, generator=g)], 1)
    correlation = torch.corrcoef(torch.cat([folded, cycle], 1).T)[0, 2:].abs().max()
    assert correlation < 0.15
    assert float(normalised_hsic(folded, cycle)) > 0.1
    assert float(normalised_hsic(cycle, cycle)) == pytest.approx(1.0, abs=1e-5)


def test_hsic_does_not_depend_on_the_scale_of_either_latent():
    g = _generator(1)
    x, y = torch.randn(100, 3, generator=g), torch.randn(100, 5, generator=g)
    y = y + x.sum(1, keepdim=True)
    assert float(normalised_hsic(10 * x, 0.01 * y)) == pytest.approx(float(normalised_hsic(x, y)), rel=1e-4)


def test_structure_alone_is_not_dependence():
    """The biased estimate of a clustered latent against an independent one is well above
    0 and grows with the clusters; as a penalty it would erase the programs themselves."""
    g = _generator(3)
    values = []
    for _ in range(30):
        program = torch.randint(0, 8, (180,), generator=g)
        clustered = (3 * torch.randn(8, 10, generator=g))[program] + 0.3 * torch.randn(180, 10, generator=g)
        values.append(float(normalised_hsic(clustered, torch.randn(180, 10, generator=g))))
    assert abs(sum(values) / len(values)) < 0.01


def test_hsic_of_too_few_cells_or_a_constant_latent_is_zero():
    g = _generator(2)
    assert float(normalised_hsic(torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g))) == 0.0
    assert float(normalised_hsic(torch.zeros(20, 2), torch.randn(20, 2, generator=g))) == 0.0


def test_the_term_is_weighted_per_cell_and_moves_only_the_salient_encoder():
    torch.manual_seed(0)  # initial weights whose salient and background means depend on each other
    module = make_module().eval()
    batch = make_batch()
    _, off, _ = loss_and_terms(module, batch, 24, TermWeights())
    assert "independence" not in off  # weight 0: no site at all
    loss, terms, encoded = loss_and_terms(module, batch, 240, TermWeights(independence=2.0))
    free = ~batch["is_control"]
    expected = 2.0 * 240 * normalised_hsic(encoded["salient_loc"][free], encoded["background_loc"][free]).clamp_min(0)
    assert terms["independence"] > 0
    assert terms["independence"] == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() == pytest.approx(sum(terms.values()), rel=1e-5)
    assert_only_the_salient_encoder_answers(module, batch, TermWeights(independence=2.0))


def assert_only_the_salient_encoder_answers(module, batch, weights):
    """The guide's factor alone (the same draws with and without it, differenced) moves the
    salient encoder and nothing else: the background keeps what it explains, the decoder too."""
    with_term, _, _ = loss_and_terms(module, batch, 240, weights, seed=3)
    without, _, _ = loss_and_terms(module, batch, 240, TermWeights(), seed=3)
    module.zero_grad()
    (with_term - without).backward()
    grads = {name: p.grad for name, p in module.named_parameters()}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("inference.salient"))
    assert all(g is None or g.abs().sum() == 0 for n, g in grads.items()
               if n.startswith(("inference.background", "generative")))


def test_the_nuisance_term_scores_the_salient_against_the_nuisance_columns_only():
    torch.manual_seed(0)
    module = make_module().eval()
    batch = make_batch()
    free = ~batch["is_control"]
    _, off, encoded = loss_and_terms(module, batch, 240, TermWeights())
    # nuisance columns that are a function of the salient means: strongly dependent
    batch["nuisance"] = encoded["salient_loc"].detach()[:, :2].pow(2)
    _, empty, _ = loss_and_terms(module, {**batch, "nuisance": batch["nuisance"][:, :0]}, 240,
                                 TermWeights(nuisance=2.0))
    assert "nuisance" not in off and "nuisance" not in empty  # weight 0 or no column: no site
    loss, terms, encoded = loss_and_terms(module, batch, 240, TermWeights(nuisance=2.0))
    expected = 2.0 * 240 * normalised_hsic(encoded["salient_loc"][free], batch["nuisance"][free]).clamp_min(0)
    assert terms["nuisance"] == pytest.approx(expected.item(), rel=1e-5) and terms["nuisance"] > 1.0
    assert loss.item() == pytest.approx(sum(terms.values()), rel=1e-5)
    assert_only_the_salient_encoder_answers(module, batch, TermWeights(nuisance=2.0))
