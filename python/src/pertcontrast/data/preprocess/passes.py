"""The passes over a row source (see :mod:`.rows`); each keeps a few numbers per cell and
per gene, never the matrix.

1. quality: count checks, QC metrics per cell, detection per gene (all cells);
2. detection per gene among the cells that pass QC (the rare-gene filter);
3. moments: gene sums and sums of squares of the counts (seurat_v3) and gene sums of the
   log-normalised counts (the control genes of the cell-cycle scores);
4. scores: clipped sums for seurat_v3's standardised variance, and the cell-cycle scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from pertcontrast.data import validate
from pertcontrast.data.preprocess.kernels import kernels
from pertcontrast.data.preprocess.rows import counts

TARGET_SUM = 1e4


@dataclass
class CellMetrics:
    total_counts: np.ndarray  # float32, every input cell
    n_genes_by_counts: np.ndarray  # int64
    pct_counts_mt: np.ndarray  # float32
    detected: np.ndarray  # cells with each gene (int64, every input gene)


def quality_pass(rows, mito: np.ndarray, source: str, chunk_size: int) -> CellMetrics:
    """Pass 1 over every cell."""
    n = rows.n_obs
    totals, mito_counts = np.zeros(n), np.zeros(n)
    n_genes = np.zeros(n, dtype=np.int64)
    detected = np.zeros(rows.n_vars, dtype=np.int64)
    k = kernels()
    for start, stop, raw in rows.raw_blocks(chunk_size):
        validate.check_count_values(raw, source)
        block = sp.csr_matrix(raw, dtype=np.float32)
        k.row_metrics(block.indptr, block.indices, block.data, mito,
                      totals[start:stop], n_genes[start:stop], mito_counts[start:stop])
        k.detection(block.indices, block.data, detected)
    totals = totals.astype(np.float32)  # integer counts: exact
    pct = (np.float32(100.0) * mito_counts.astype(np.float32) / np.maximum(totals, np.float32(1))).astype(np.float32)
    return CellMetrics(totals, n_genes, pct, detected)


def detection_pass(rows, cells: np.ndarray, chunk_size: int) -> np.ndarray:
    """Pass 2: cells with each gene among ``cells``."""
    detected = np.zeros(rows.n_vars, dtype=np.int64)
    k = kernels()
    for _, _, block in counts(rows, chunk_size, cells):
        k.detection(block.indices, block.data, detected)
    return detected


def log_normalise(block: sp.csr_matrix) -> sp.csr_matrix:
    """Counts per 10k per cell, then log1p, in float32 (as scanpy's normalize_total and
    log1p compute them, so the cell-cycle scores match scanpy's)."""
    totals = np.asarray(block.sum(axis=1, dtype=np.float64)).ravel().astype(np.float32)
    size = totals / np.float32(TARGET_SUM)
    size[size == 0] = 1
    data = block.data / np.repeat(size, np.diff(block.indptr))
    return sp.csr_matrix((np.log1p(data), block.indices, block.indptr), shape=block.shape)


@dataclass
class Moments:
    sums: np.ndarray
    squares: np.ndarray
    log_sums: np.ndarray | None


def moments_pass(rows, cells, genes, chunk_size: int, cell_cycle: bool) -> Moments:
    """Pass 3 over the kept cells x kept genes."""
    n = int(genes.sum())
    moments = Moments(np.zeros(n), np.zeros(n), np.zeros(n) if cell_cycle else None)
    k = kernels()
    for _, _, block in counts(rows, chunk_size, cells, genes):
        k.add_moments(block.indices, block.data, moments.sums, moments.squares)
        if cell_cycle:
            normalised = log_normalise(block)
            k.add_sums(normalised.indices, normalised.data, moments.log_sums)
    return moments


def _row_means(matrix: sp.csr_matrix, columns: np.ndarray) -> np.ndarray:
    sub = matrix[:, columns]
    return np.asarray(sub.sum(axis=1, dtype="float64")).ravel() / len(columns)


def score_pass(rows, cells, genes, chunk_size: int, clip_val: np.ndarray, cycle=None):
    """Pass 4: clipped sums and squares for seurat_v3; with a cell-cycle plan, each kept
    cell's S and G2/M scores (into ``cycle.scores``, rows of the kept cells)."""
    k = kernels()
    squares, sums = np.zeros(len(clip_val)), np.zeros(len(clip_val))
    written = 0
    for _, _, block in counts(rows, chunk_size, cells, genes):
        k.add_clipped(block.indices, block.data, clip_val, squares, sums)
        if cycle is not None:
            normalised = log_normalise(block)
            out = slice(written, written + block.shape[0])
            cycle.scores[out, 0] = _row_means(normalised, cycle.s_genes) - _row_means(normalised, cycle.s_control)
            cycle.scores[out, 1] = _row_means(normalised, cycle.g2m_genes) - _row_means(normalised, cycle.g2m_control)
        written += block.shape[0]
    return sums, squares
