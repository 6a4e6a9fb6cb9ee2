"""The CPU fast path of :class:`~pertcontrast.module.likelihood.CountDistribution`:
log-softmax, (ZI)NB log-likelihood and every gradient, in one pass over each cell's row.

On CPU this term is bound by passes over memory: as torch operations it reads and writes
the cells x genes block a few dozen times. Here each row stays in L1-sized buffers and
its gradients are written once, in the forward pass (a cell's value depends on its own
row only, so the backward pass just scales them). numba compiles it on first use (cached
on disk; no C compiler, no pointers); rows are split over threads that release the GIL.

exp is a polynomial with the exponent set through integer bits and log(1 + t) an atanh
series, both branch-free so the loops vectorise (about 1 ulp in float32). Counts up to
``TABLE_COUNTS`` read lgamma(x + theta) - lgamma(theta) = sum_{j < x} log(theta + j) and
its digamma derivative from per-gene tables; larger or fractional counts use lgamma
directly. Formulas: see :mod:`pertcontrast.module.likelihood`.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numba import njit

TABLE_COUNTS = 64
F = np.float32
ZERO, HALF, ONE, TWO = F(0.0), F(0.5), F(1.0), F(2.0)
EXP_LO, LOG2E, LN2_HI, LN2_LO = F(-87.3365), F(1.44269504088896341), F(0.693359375), F(-2.12194440e-4)
EXP_POLY = (F(1.9875691500e-4), F(1.3981999507e-3), F(8.3334519073e-3), F(4.1665795894e-2),
            F(1.6666665459e-1), F(5.0000001201e-1))
LOG1P_POLY = tuple(F(2.0 / k) for k in (15, 13, 11, 9, 7, 5, 3))
EXPONENT_BIAS, MANTISSA_BITS = np.int32(127), np.int32(23)
LOG_FACTORIAL = np.array([math.lgamma(k + 1.0) for k in range(TABLE_COUNTS + 1)])
_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}
_SUMS = dict(_JIT, fastmath={"reassoc", "contract"})  # vectorised sums only: keeps exp's split of ln 2


@njit(**_JIT)
def _exp_into(x, out, bits):
    """out = exp(x) for x <= 0 (and NaN stays NaN)."""
    p0, p1, p2, p3, p4, p5 = EXP_POLY
    for g in range(x.shape[0]):
        v = max(x[g], EXP_LO)
        n = math.floor(v * LOG2E + HALF)
        r = (v - n * LN2_HI) - n * LN2_LO
        y = ((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5
        out[g] = y * (r * r) + r + ONE
        bits[g] = (np.int32(n) + EXPONENT_BIAS) << MANTISSA_BITS
    scale = bits.view(np.float32)
    for g in range(x.shape[0]):
        out[g] = out[g] * scale[g] if x[g] >= EXP_LO else (ZERO if x[g] < EXP_LO else x[g])


@njit(**_JIT)
def _log1p_unit(t):
    """log(1 + t) for t in [0, 1] as 2 atanh(t / (2 + t))."""
    s = t / (TWO + t)
    s2 = s * s
    c15, c13, c11, c9, c7, c5, c3 = LOG1P_POLY
    y = ((((((c15 * s2 + c13) * s2 + c11) * s2 + c9) * s2 + c7) * s2 + c5) * s2 + c3) * s2 + TWO
    return y * s


@njit(**_SUMS)
def _sum(x):
    total = 0.0
    for g in range(x.shape[0]):
        total += x[g]
    return total


@njit(**_JIT)
def _digamma(x):
    shifted = 0.0
    while x < 6.0:
        shifted -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    return shifted + math.log(x) - 0.5 / x - f * (1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240 - f / 132))))


@njit(**_JIT)
def _rows(first, last, logits, log_library, gate, theta, log_theta, indptr, cols, counts,
          lgamma_table, digamma_table, value, grad_logits, grad_gate, grad_theta, grad_log_library):
    """Cells ``first:last``: ``value`` and (when ``grad_logits`` has rows) the gradients."""
    n_genes = logits.shape[1]
    zinb, with_grad = gate.shape[0] > 0, grad_logits.shape[0] > 0
    buffers = np.empty((18, n_genes), np.float32)
    expo, arg, arg2, d, a, sp, p, q, z, term, grad_d, gate_sp, gate_prob, b, c, zero_minus, g_gate, g_theta = buffers
    bits = np.empty(n_genes, np.int32)
    for i in range(first, last):
        row = logits[i]
        top = row.max()
        for g in range(n_genes):
            arg[g] = row[g] - top
        _exp_into(arg, expo, bits)
        total = _sum(expo)
        shift = F(log_library[i] - (top + math.log(total)))
        for g in range(n_genes):
            d[g] = row[g] + shift - log_theta[g]
            arg[g] = -abs(d[g])
        _exp_into(arg, a, bits)
        for g in range(n_genes):  # softplus(d), sigmoid(d), 1 - sigmoid(d), log NB(0)
            inv = ONE / (ONE + a[g])
            sp[g] = max(d[g], ZERO) + _log1p_unit(a[g])
            p[g] = (ONE if d[g] > ZERO else a[g]) * inv
            q[g] = (a[g] if d[g] > ZERO else ONE) * inv
            z[g] = -theta[g] * sp[g]
            term[g] = z[g]
            grad_d[g] = -theta[g] * p[g]
            g_theta[g] = p[g] - sp[g]
        if zinb:
            h = gate[i]
            for g in range(n_genes):
                arg[g] = -abs(h[g] - z[g])
                arg2[g] = -abs(h[g])
            _exp_into(arg, b, bits)
            _exp_into(arg2, c, bits)
            for g in range(n_genes):  # log P(0) = logaddexp(h, z) - softplus(h)
                gate_sp[g] = max(h[g], ZERO) + _log1p_unit(c[g])
                gate_prob[g] = (ONE if h[g] > ZERO else c[g]) / (ONE + c[g])
                w = (ONE if z[g] > h[g] else b[g]) / (ONE + b[g])  # sigmoid(z - h)
                term[g] = max(h[g], z[g]) + _log1p_unit(b[g]) - gate_sp[g]
                zero_minus[g] = z[g] - term[g]
                grad_d[g] = grad_d[g] * w
                g_gate[g] = (ONE - w) - gate_prob[g]
                g_theta[g] = g_theta[g] * w
        total_value = _sum(term)
        for k in range(indptr[i], indptr[i + 1]):  # nonzero counts replace their zero term
            g, x = cols[k], counts[k]
            j = int(x) - 1 if 1.0 <= x <= TABLE_COUNTS and x == math.floor(x) else -1
            th = theta[g]
            if j >= 0:
                count_term, log_factorial = lgamma_table[j, g], LOG_FACTORIAL[j + 1]
            else:
                count_term, log_factorial = math.lgamma(x + th) - math.lgamma(th), math.lgamma(x + 1.0)
            total_value += x * (d[g] - sp[g]) + count_term - log_factorial
            if zinb:
                total_value += zero_minus[g] - gate_sp[g]
                g_gate[g] = -gate_prob[g]
            if with_grad:
                digamma_term = digamma_table[j, g] if j >= 0 else _digamma(x + th) - _digamma(th)
                grad_d[g] = x * q[g] - th * p[g]
                g_theta[g] = digamma_term + (p[g] - sp[g]) - x * q[g] / th
        value[i] = total_value
        if with_grad:  # through the log-softmax: d(d_g) / d(logit_j) = [g == j] - softmax_j
            sum_grad_d = _sum(grad_d)
            per_total = F(sum_grad_d / total)
            for g in range(n_genes):
                grad_logits[i, g] = grad_d[g] - expo[g] * per_total
                grad_theta[i, g] = g_theta[g]
                if zinb:
                    grad_gate[i, g] = g_gate[g]
            grad_log_library[i] = sum_grad_d


def count_tables(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(TABLE_COUNTS x genes) tables: [x - 1, g] = sum_{j < x} log(theta_g + j), and the
    same sum of 1 / (theta_g + j)."""
    shifted = theta.astype(np.float64)[None, :] + np.arange(TABLE_COUNTS)[:, None]
    return np.cumsum(np.log(shifted), 0).astype(np.float32), np.cumsum(1.0 / shifted, 0).astype(np.float32)


def log_likelihood(logits, log_library, gate, theta, indptr, cols, counts, with_grad: bool, n_threads: int):
    """Per-cell log-likelihood (float64) of CSR counts (``indptr``, ``cols``, ``counts``,
    canonical: sorted, no duplicates or stored zeros) given float32 ``logits`` (cells x
    genes), ``log_library`` (cells), ``gate`` logits (cells x genes, or None for NB) and
    ``theta`` (genes); with ``with_grad`` also the gradients of each cell's value with
    respect to its logits, gate logits, theta (cells x genes) and log library."""
    n_cells, n_genes = logits.shape
    lgamma_table, digamma_table = count_tables(theta)
    value = np.empty(n_cells)
    shape = (n_cells, n_genes) if with_grad else (0, n_genes)
    grads = [np.empty(shape, np.float32), np.empty(shape if gate is not None else (0, n_genes), np.float32),
             np.empty(shape, np.float32), np.empty(n_cells if with_grad else 0, np.float32)]
    gate = np.empty((0, n_genes), np.float32) if gate is None else gate
    arguments = (logits, log_library, gate, theta, np.log(theta), indptr, cols, counts,
                 lgamma_table, digamma_table, value, *grads)
    bounds = np.linspace(0, n_cells, max(1, min(n_threads, n_cells // 32)) + 1).astype(np.int64)
    workers = [threading.Thread(target=_rows, args=(int(lo), int(hi), *arguments))
               for lo, hi in zip(bounds[1:-1], bounds[2:])]
    for worker in workers:
        worker.start()
    _rows(int(bounds[0]), int(bounds[1]), *arguments)
    for worker in workers:
        worker.join()
    return value, grads
