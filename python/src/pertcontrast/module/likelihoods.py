"""Count likelihoods, parameterised by the log mean so no epsilon is ever needed.

The log-densities are the same numbers as Pyro's ``NegativeBinomial`` and
``ZeroInflatedNegativeBinomial`` (tested against scipy and against Pyro's gradients).
They dominate a training step on CPU, so they are written for speed:

- the count terms (the lgamma calls and their digamma gradients) are evaluated only on
  the nonzero entries, whose positions the data loader can hand over precomputed
  (:func:`nonzero_entries`), and ``lgamma(x + 1)``, which has no parameters, once per cell;
- the gradient is written out by hand (:class:`_CountLogLikelihood`): autograd through
  ``logaddexp`` and ``softplus`` costs about three times as many passes over the
  cells x genes block as the closed form;
- on CPU, given the decoder's logits (:func:`count_distribution_from_logits`), a C kernel
  (:mod:`pertcontrast.module.native`) does the log-softmax, the likelihood and its
  gradients in one pass per cell (:class:`_NativeCountLogLikelihood`), where torch makes
  a pass over the block per operation. Same formulas, float32 rounding (tested against
  float64); torch runs when the kernel cannot be built, on GPU and in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution, constraints
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

LIKELIHOODS = ("zinb", "nb")
NONZERO_FIELDS = ("flat", "rows", "cols", "counts", "log_factorial", "table_index", "large")
# lgamma(x + theta) - lgamma(theta) and its digamma derivative are read from a per-gene
# table of their recurrences for counts up to this; most nonzero UMI counts are small
TABLE_COUNTS = 64


@dataclass(frozen=True)
class NonzeroEntries:
    """Where a (cells x genes) count block is nonzero, and what it holds there.

    ``flat`` are row-major positions (``rows * n_genes + cols``), ``log_factorial`` is
    ``sum_g lgamma(x_ng + 1)`` per cell, ``table_index`` the entry's place in the
    per-gene count tables (``col * TABLE_COUNTS + x - 1``), ``large`` the entries the
    tables do not cover (x > TABLE_COUNTS or not an integer): everything the
    likelihood needs from the counts, so a data loader can compute it off the step.
    """

    flat: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    counts: torch.Tensor
    log_factorial: torch.Tensor
    table_index: torch.Tensor
    large: torch.Tensor

    @classmethod
    def from_coordinates(cls, rows, cols, counts, n_cells: int, n_genes: int) -> "NonzeroEntries":
        """From the row, column and value of each nonzero entry (row-major order)."""
        log_factorial = counts.new_zeros(n_cells).index_add_(0, rows, torch.lgamma(counts + 1.0))
        covered = counts.clamp(1, TABLE_COUNTS)
        large = ((counts > TABLE_COUNTS) | (counts != counts.round())).nonzero().squeeze(1)
        table_index = cols * TABLE_COUNTS + covered.long() - 1
        return cls(rows * n_genes + cols, rows, cols, counts, log_factorial, table_index, large)

    def to_batch(self) -> dict[str, torch.Tensor]:
        """Minibatch entries (a minibatch is a flat dict of tensors)."""
        return {f"nonzero_{name}": getattr(self, name) for name in NONZERO_FIELDS}

    @classmethod
    def from_batch(cls, batch: dict[str, torch.Tensor]) -> "NonzeroEntries | None":
        """The entries a data loader precomputed, or None when it did not."""
        if "nonzero_flat" not in batch:
            return None
        return cls(**{name: batch[f"nonzero_{name}"] for name in NONZERO_FIELDS})


def nonzero_entries(counts: torch.Tensor) -> NonzeroEntries:
    """The nonzero entries of a dense (cells x genes) block."""
    n_cells, n_genes = counts.shape
    flat = counts.reshape(-1).nonzero().squeeze(1)
    rows = torch.div(flat, n_genes, rounding_mode="floor")
    values = counts.reshape(-1).index_select(0, flat)
    return NonzeroEntries.from_coordinates(rows, flat - rows * n_genes, values, n_cells, n_genes)


def _count_table(dispersion: torch.Tensor, term) -> torch.Tensor:
    """(genes x TABLE_COUNTS): entry [g, x - 1] = sum_{j < x} term(theta_g + j)."""
    steps = torch.arange(TABLE_COUNTS, dtype=dispersion.dtype, device=dispersion.device)
    return term(dispersion.unsqueeze(-1) + steps).cumsum(-1)


def _at_counts(dispersion, entries: NonzeroEntries, term, exact) -> torch.Tensor:
    """``exact(x + theta) - exact(theta)`` at each nonzero entry (lgamma or digamma),
    through the recurrence table where it covers x and directly elsewhere."""
    values = _count_table(dispersion, term).reshape(-1).index_select(0, entries.table_index)
    if entries.large.numel():
        theta = dispersion.index_select(0, entries.cols.index_select(0, entries.large))
        counts = entries.counts.index_select(0, entries.large)
        values = values.index_copy(0, entries.large, exact(counts + theta) - exact(theta))
    return values


# Largest log(mu / theta) for which exp() of it is finite in float32, with margin, and the
# smallest zero probability whose log the direct formula may take (else: the stable one).
_DIRECT_MAX_LOG_RATIO = 80.0
_DIRECT_MIN_ZERO_PROB = 1e-30


def _zero_terms_stable(d, dispersion, gate):
    """Per entry: softplus(d), log NB(0) = z, log P(0), and the backward's p, w, s,
    through softplus and logaddexp (safe for any value)."""
    sp = F.softplus(d)
    z = sp * -dispersion
    p = torch.sigmoid(d)
    if gate is None:
        return sp, z, z, p, None, None
    log_zero = torch.logaddexp(gate, z)
    w = torch.exp(z - log_zero)  # d logaddexp(h, z) / dz = sigmoid(z - h)
    return sp, z, log_zero - F.softplus(gate), p, w, torch.sigmoid(gate)


def _zero_terms_direct(d, dispersion, gate):
    """The same numbers with half the transcendental functions (a CPU step is bound by
    them): u = mu / theta = exp(d), NB(0) = exp(z), P(0) = pi + (1 - pi) NB(0).
    None when a value is outside the range where that is exact to float precision."""
    if float(d.max()) > _DIRECT_MAX_LOG_RATIO:
        return None
    u = torch.exp(d)
    sp = torch.log1p(u)
    z = sp * -dispersion
    p = u.div_(u + 1.0)
    if gate is None:
        return sp, z, z, p, None, None
    pi = torch.sigmoid(gate)
    kept = 1.0 - pi
    nb_zero = torch.exp(z)
    zero_prob = torch.addcmul(pi, kept, nb_zero)
    if float(zero_prob.min()) < _DIRECT_MIN_ZERO_PROB:
        return None
    w = kept.mul_(nb_zero).div_(zero_prob)  # (1 - pi) NB(0) / P(0) = sigmoid(z - h)
    return sp, z, torch.log(zero_prob), p, w, pi


class _CountLogLikelihood(torch.autograd.Function):
    """Per-cell sum over genes of log NB / log ZINB, with a closed-form backward.

    With ``d = log(mu / theta)``, ``sp = softplus(d) = log(1 + mu / theta)``:
    ``log NB(0) = z = -theta * sp`` and, for x > 0,
    ``log NB(x) = z + x (d - sp) + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)``.
    Zero inflation with gate logits h: ``log P(0) = logaddexp(h, z) - softplus(h)`` and
    ``log P(x > 0) = log NB(x) - softplus(h)``. Every entry pays for log P(0); the
    nonzero entries' corrections are added in place before the sum over genes.
    """

    @staticmethod
    def forward(ctx, log_mean, gate, dispersion, entries: NonzeroEntries):
        d = log_mean - torch.log(dispersion)
        # on CUDA the stable form costs little and needs no host check
        terms = _zero_terms_direct(d, dispersion, gate) if d.device.type == "cpu" else None
        sp, z, log_zero_prob, p, w, pi = terms or _zero_terms_stable(d, dispersion, gate)
        flat = entries.flat
        count_terms = entries.counts * (d - sp).reshape(-1).index_select(0, flat)
        count_terms += _at_counts(dispersion, entries, torch.log, torch.lgamma)
        # for x > 0 the entry's log P(0) is replaced by log NB(x) + log(1 - pi)
        count_terms += (z - log_zero_prob).reshape(-1).index_select(0, flat)
        if gate is not None:
            count_terms -= F.softplus(gate.reshape(-1).index_select(0, flat))
        log_zero_prob.reshape(-1).index_add_(0, flat, count_terms)
        per_cell = log_zero_prob.sum(-1) - entries.log_factorial
        ctx.entries = entries
        ctx.save_for_backward(p, sp, w, pi, dispersion)
        return per_cell

    @staticmethod
    def backward(ctx, grad_per_cell):
        p, sp, w, pi, dispersion = ctx.saved_tensors
        entries = ctx.entries
        flat, counts = entries.flat, entries.counts
        p_nz = p.reshape(-1).index_select(0, flat)  # p = mu / (theta + mu) = d sp / d d
        theta_nz = dispersion.index_select(0, entries.cols)
        one_minus_p_nz = 1.0 - p_nz
        grad_mean_nz = counts * one_minus_p_nz
        grad_theta_nz = _at_counts(dispersion, entries, torch.reciprocal, torch.digamma)
        grad_theta_nz -= grad_mean_nz / theta_nz
        dz_dtheta = p - sp  # and dz/dd = -theta p
        if w is None:
            grad_mean = p * -dispersion
            grad_gate = None
        else:
            grad_mean = (p * w) * -dispersion
            grad_gate = (1.0 - w) - pi
            # at x > 0 the zero term is replaced: its dense gradients become those of
            # z - softplus(h) (gate: -pi, i.e. subtract 1 - w; mean and theta: 1 - w of dz)
            rest = 1.0 - w.reshape(-1).index_select(0, flat)
            grad_gate.reshape(-1).index_add_(0, flat, -rest)
            grad_mean_nz -= theta_nz * p_nz * rest
            grad_theta_nz += rest * dz_dtheta.reshape(-1).index_select(0, flat)
            dz_dtheta = dz_dtheta * w
        grad_mean.reshape(-1).index_add_(0, flat, grad_mean_nz)
        dz_dtheta.reshape(-1).index_add_(0, flat, grad_theta_nz)
        per_cell = grad_per_cell.unsqueeze(-1)
        grad_mean *= per_cell
        if grad_gate is not None:
            grad_gate *= per_cell
        return grad_mean, grad_gate, grad_per_cell @ dz_dtheta, None


class _NativeCountLogLikelihood(torch.autograd.Function):
    """The same per-cell sum as :class:`_CountLogLikelihood`, from the decoder's logits
    (the log-softmax included), computed by the C kernel in one pass per cell.

    The kernel computes each cell's gradients in the forward pass (a cell's value depends
    on its own row only), so the backward pass only scales them by the incoming gradient.
    """

    @staticmethod
    def forward(ctx, logits, log_library, gate, dispersion, entries: NonzeroEntries, kernel):
        n_cells, n_genes = logits.shape
        with_grad = any(ctx.needs_input_grad[:4])
        per_cell = logits.new_empty(n_cells)
        grads = [logits.new_empty(n_cells, n_genes), None if gate is None else logits.new_empty(n_cells, n_genes),
                 logits.new_empty(n_cells, n_genes), logits.new_empty(n_cells)] if with_grad else [None] * 4
        kernel(logits.contiguous(), log_library.reshape(-1).contiguous(),
               None if gate is None else gate.contiguous(), dispersion.contiguous(), entries.rows.contiguous(),
               entries.cols.contiguous(), entries.counts.contiguous(), entries.log_factorial.contiguous(),
               per_cell, *grads, n_threads=torch.get_num_threads())
        if with_grad:
            ctx.has_gate = gate is not None
            ctx.log_library_shape = log_library.shape
            ctx.save_for_backward(*(g for g in grads if g is not None))
        return per_cell

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_per_cell):
        saved = list(ctx.saved_tensors)
        grad_logits, grad_theta, grad_log_library = saved[0], saved[-2], saved[-1]
        per_cell = grad_per_cell.unsqueeze(-1)
        grad_gate = saved[1] * per_cell if ctx.has_gate else None
        return (grad_logits * per_cell, (grad_log_library * grad_per_cell).reshape(ctx.log_library_shape),
                grad_gate, grad_per_cell @ grad_theta, None, None)


def _native_applies(kernel, value, logits, log_library, gate) -> bool:
    """Whether the C kernel can evaluate this block: float32 on CPU, no broadcasting."""
    tensors = [logits, log_library, value] + ([] if gate is None else [gate])
    return (
        kernel is not None and logits.dim() == 2 and value.shape == logits.shape
        and log_library.numel() == logits.shape[0] and (gate is None or gate.shape == logits.shape)
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and not value.requires_grad
    )


def _log_prob_per_cell(value, log_mean, dispersion, dropout_logits=None, nonzero: NonzeroEntries | None = None):
    """Sum over genes of log (ZI)NB(x | mu, theta), one number per cell."""
    shape = torch.broadcast_shapes(value.shape, log_mean.shape)
    n_genes = shape[-1]
    value = value.expand(shape).reshape(-1, n_genes)
    log_mean = log_mean.expand(shape).reshape(-1, n_genes)
    gate = None if dropout_logits is None else dropout_logits.expand(shape).reshape(-1, n_genes)
    if nonzero is None or nonzero.log_factorial.shape[0] != value.shape[0]:
        nonzero = nonzero_entries(value)
    dtype = log_mean.dtype
    if nonzero.counts.dtype != dtype:
        nonzero = replace(nonzero, counts=nonzero.counts.to(dtype), log_factorial=nonzero.log_factorial.to(dtype))
    per_cell = _CountLogLikelihood.apply(
        log_mean, None if gate is None else gate.to(dtype), dispersion.to(dtype), nonzero,
    )
    return per_cell.reshape(shape[:-1])


class CountLikelihood(TorchDistribution):
    """(Zero-inflated) negative binomial over genes, one event per cell.

    ``log_mean`` is (cells, genes), ``dispersion`` (genes,) is the inverse dispersion
    (variance = mu + mu^2 / dispersion), ``dropout_logits`` (cells, genes) the logits of a
    structural zero; ``zero_inflated=False`` ignores them.

    Built by :func:`count_distribution_from_logits` it holds the decoder's expression
    logits and the log library size instead (``log_mean`` is then computed when asked
    for), so that ``log_prob`` can hand both to the C kernel, which does the log-softmax.
    """

    support = constraints.independent(constraints.nonnegative_integer, 1)

    def __init__(self, log_mean, dispersion, dropout_logits, zero_inflated: bool, nonzero=None,
                 validate_args=None, *, expression=None, kernel=None):
        self._log_mean = log_mean
        self.expression = expression  # (logits, log_library) or None
        self.kernel = kernel  # the C count kernel, or None for torch
        self.nonzero = nonzero  # NonzeroEntries of the observed counts, when precomputed
        self.dispersion = dispersion
        self.dropout_logits = dropout_logits
        self.zero_inflated = zero_inflated
        reference = log_mean if log_mean is not None else expression[0]
        super().__init__(reference.shape[:-1], reference.shape[-1:], validate_args=validate_args)

    @property
    def arg_constraints(self):
        mean_argument = "log_mean" if self.expression is None else "logits"
        return {mean_argument: constraints.real, "dispersion": constraints.positive}

    @property
    def logits(self):
        return self.expression[0]

    @property
    def log_mean(self):
        if self._log_mean is None:
            logits, log_library = self.expression
            self._log_mean = log_library + torch.log_softmax(logits, dim=-1)
        return self._log_mean

    def _pyro_equivalent(self) -> TorchDistribution:
        dispersion = self.dispersion.expand_as(self.log_mean)
        logits = self.log_mean - torch.log(dispersion)
        if self.zero_inflated:
            base = dist.ZeroInflatedNegativeBinomial(
                total_count=dispersion, logits=logits, gate_logits=self.dropout_logits
            )
        else:
            base = dist.NegativeBinomial(total_count=dispersion, logits=logits)
        return base.to_event(1)

    @property
    def mean(self):
        return self._pyro_equivalent().mean

    def sample(self, sample_shape=torch.Size()):
        return self._pyro_equivalent().sample(sample_shape)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        shape = batch_shape + self.event_shape
        return CountLikelihood(
            self.log_mean.expand(shape), self.dispersion,
            self.dropout_logits.expand(shape), self.zero_inflated,
            self.nonzero if batch_shape == self.batch_shape else None,
        )

    def log_prob(self, value):
        gate = self.dropout_logits if self.zero_inflated else None
        if self.expression is not None:
            logits, log_library = self.expression
            if _native_applies(self.kernel, value, logits, log_library, gate):
                nonzero = self.nonzero
                if nonzero is None or nonzero.log_factorial.shape[0] != value.shape[0]:
                    nonzero = nonzero_entries(value)
                if nonzero.counts.dtype != torch.float32:
                    nonzero = replace(nonzero, counts=nonzero.counts.float(), log_factorial=nonzero.log_factorial.float())
                return _NativeCountLogLikelihood.apply(
                    logits, log_library, gate, self.dispersion.float(), nonzero, self.kernel,
                )
        return _log_prob_per_cell(value, self.log_mean, self.dispersion, gate, self.nonzero)


def _check_likelihood(likelihood: str) -> None:
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")


def count_distribution(
    log_mean: torch.Tensor,
    dispersion: torch.Tensor,
    dropout_logits: torch.Tensor,
    likelihood: str,
    nonzero: NonzeroEntries | None = None,
) -> TorchDistribution:
    """Per-gene (Zero-Inflated) Negative Binomial with mean exp(log_mean) and inverse
    dispersion ``dispersion``, one event per cell. ``nonzero``: the observed counts'
    nonzero entries, when the data loader computed them (they are found otherwise)."""
    _check_likelihood(likelihood)
    return CountLikelihood(log_mean, dispersion, dropout_logits, zero_inflated=likelihood == "zinb",
                           nonzero=nonzero)


def count_distribution_from_logits(
    logits: torch.Tensor,
    log_library: torch.Tensor,
    dispersion: torch.Tensor,
    dropout_logits: torch.Tensor,
    likelihood: str,
    nonzero: NonzeroEntries | None = None,
    kernel=None,
) -> TorchDistribution:
    """The same distribution with ``log_mean = log_library + log_softmax(logits)``;
    ``kernel`` (from :func:`pertcontrast.module.native.build_count_kernel`) evaluates
    ``log_prob`` on CPU in one pass, None leaves it to torch."""
    _check_likelihood(likelihood)
    return CountLikelihood(None, dispersion, dropout_logits, zero_inflated=likelihood == "zinb",
                           nonzero=nonzero, expression=(logits, log_library), kernel=kernel)
