"""Minibatches from a sparse count matrix: each batch's counts stay sparse (CSR).

Training batches hold controls and perturbed cells in a fixed proportion. Each group is
drawn without replacement from its own shuffled order, and the smaller group cycles
(reshuffled) when it runs out, so no batch is skipped and every cell is seen once per
pass of its group; an epoch is the longer of the two passes. Each cell carries a ``stratum_weight`` that, times the plate's
``n_cells / batch_size``, equals ``n_group / batch_group``: the estimate stays unbiased.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from pertcontrast.errors import ParameterError


class CountRows:
    """Row access to a cells x genes count matrix (CSR in memory or a backed AnnData).

    ``gene_index`` maps model genes to columns of the matrix (for data whose genes are
    ordered differently or are a superset of the model's).
    """

    def __init__(self, matrix, gene_index: np.ndarray | None = None):
        self.matrix = matrix
        self.gene_index = gene_index
        self.n_obs = matrix.shape[0]
        # rows of an in-memory float32 CSR without duplicates or stored zeros (what
        # preprocess writes) can be taken as they are, in any order: one gather
        self.direct = (
            sp.issparse(matrix) and matrix.format == "csr" and matrix.dtype == np.float32 and gene_index is None
            and matrix.has_canonical_format and bool(matrix.data.all())
        )

    @property
    def on_disk(self) -> bool:
        """A backed (on-disk) matrix: reads should be contiguous slices."""
        return not isinstance(self.matrix, np.ndarray) and not sp.issparse(self.matrix)

    def block(self, start: int, stop: int):
        """Rows ``start:stop`` as they are stored (CSR stays CSR): one sequential read."""
        block = self.matrix[start:stop]
        return block.tocsr() if sp.issparse(block) else np.asarray(block)

    def csr_rows(self, rows: np.ndarray) -> sp.csr_matrix:
        """The given rows, in the given order, as canonical float32 CSR (sorted, summed
        duplicates, no stored zeros) over the model's genes."""
        rows = np.asarray(rows)
        if self.direct:
            return self.matrix[rows]
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        span = int(ordered[-1] - ordered[0] + 1) if len(rows) else 0
        if len(rows) and (span == len(rows) or (self.on_disk and span <= 16 * len(rows))):
            # Contiguous or nearly so: one slice read (fast on backed files), then pick rows.
            block = self.block(int(ordered[0]), int(ordered[-1]) + 1)
            if span != len(rows):
                block = block[ordered - ordered[0]]
        else:
            block = self.matrix[ordered]
        block = sp.csr_matrix(block, dtype=np.float32)
        if self.gene_index is not None:
            block = block[:, self.gene_index]
        # read in sorted order (sequential on disk); put back in the order asked for
        block = block[np.argsort(order, kind="stable")]
        block.sum_duplicates()
        block.eliminate_zeros()
        return block

    def dense(self, rows: np.ndarray) -> np.ndarray:
        return self.csr_rows(rows).toarray()


def csr_tensor(block: sp.csr_matrix) -> torch.Tensor:
    """A canonical scipy CSR block as a torch sparse CSR tensor (shares the arrays)."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta": we use its basics only
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(block.indptr.astype(np.int64)), torch.from_numpy(block.indices.astype(np.int64)),
            torch.from_numpy(block.data.astype(np.float32, copy=False)), size=block.shape,
        )


@dataclass
class CellArrays:
    """The per-cell model inputs other than counts (see DataEncoding.encode_obs)."""

    is_control: np.ndarray
    label: np.ndarray
    covariates: np.ndarray
    library_group: np.ndarray
    nuisance: np.ndarray | None = None  # cells x nuisance columns (None: no column)

    def __post_init__(self):
        if self.nuisance is None:
            self.nuisance = np.zeros((len(self.is_control), 0), dtype=np.float32)

    @classmethod
    def from_encoded(cls, encoded: dict[str, np.ndarray]) -> "CellArrays":
        return cls(**encoded)

    def rows(self, rows: np.ndarray) -> "CellArrays":
        """The arrays of the given rows."""
        return CellArrays(self.is_control[rows], self.label[rows], self.covariates[rows], self.library_group[rows],
                          self.nuisance[rows])


def make_batch(
    counts: CountRows,
    cells: CellArrays,
    rows: np.ndarray,
    stratum_weight: np.ndarray,
    plate_index: np.ndarray,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Tensors for the given rows, on ``device``."""
    tensors = {
        "counts": csr_tensor(counts.csr_rows(rows)),
        "covariates": torch.from_numpy(cells.covariates[rows]),
        "nuisance": torch.from_numpy(cells.nuisance[rows]),
        "is_control": torch.from_numpy(cells.is_control[rows]),
        "label": torch.from_numpy(cells.label[rows]),
        "library_group": torch.from_numpy(cells.library_group[rows]),
        "stratum_weight": torch.from_numpy(stratum_weight.astype(np.float32)),
        "index": torch.from_numpy(plate_index.astype(np.int64)),
    }
    if device.type != "cuda":
        return tensors
    # pinned host memory: the copies overlap with the step
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in tensors.items()}


def split_batch(batch_size: int, control_fraction: float, n_controls: int, n_perturbed: int) -> tuple[int, int]:
    """(controls, perturbed) per batch: the fixed proportion, at least one of each."""
    batch_size = min(batch_size, n_controls + n_perturbed)
    controls = min(max(int(round(batch_size * control_fraction)), 1), batch_size - 1, n_controls)
    return controls, min(batch_size - controls, n_perturbed)


def steps_for(per_batch: tuple[int, int], n_controls: int, n_perturbed: int) -> int:
    """Enough steps for every cell of both groups to be drawn at least once."""
    return max(math.ceil(n_controls / per_batch[0]), math.ceil(n_perturbed / per_batch[1]))


class StratifiedBatches:
    """Index batches with ``round(batch_size * control_fraction)`` controls each."""

    def __init__(
        self,
        control_rows: np.ndarray,
        perturbed_rows: np.ndarray,
        batch_size: int,
        control_fraction: float,
        rng: np.random.Generator,
        population: tuple[int, int] | None = None,
    ):
        """``population``: (controls, perturbed) of the whole training set when these rows
        are only a buffer of it (out-of-core), so the weights stay unbiased."""
        if len(control_rows) == 0 or len(perturbed_rows) == 0:
            raise ParameterError("training needs both control and perturbed cells.")
        if not 0.0 < control_fraction < 1.0:
            raise ParameterError(f"must be between 0 and 1 (got {control_fraction}).", param="control_fraction")
        self.groups = (np.asarray(control_rows), np.asarray(perturbed_rows))
        self.n_cells = len(control_rows) + len(perturbed_rows)
        self.batch_size = min(batch_size, self.n_cells)
        self.per_batch = split_batch(self.batch_size, control_fraction, len(control_rows), len(perturbed_rows))
        n_controls, n_perturbed = self.per_batch
        self.rng = rng
        self._orders = [rng.permutation(g) for g in self.groups]
        self._cursors = [0, 0]
        sizes = population or (len(control_rows), len(perturbed_rows))
        plate_scale = sum(sizes) / (n_controls + n_perturbed)
        self.stratum_weights = tuple((size / taken) / plate_scale for size, taken in zip(sizes, self.per_batch))

    @property
    def steps_per_epoch(self) -> int:
        return steps_for(self.per_batch, len(self.groups[0]), len(self.groups[1]))

    def _take(self, group: int, count: int) -> np.ndarray:
        taken = []
        while count > 0:
            order, cursor = self._orders[group], self._cursors[group]
            chunk = order[cursor : cursor + count]
            taken.append(chunk)
            count -= len(chunk)
            self._cursors[group] = cursor + len(chunk)
            if self._cursors[group] >= len(order):
                self._orders[group] = self.rng.permutation(self.groups[group])
                self._cursors[group] = 0
        return np.concatenate(taken)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the next batch and their stratum weights."""
        controls = self._take(0, self.per_batch[0])
        perturbed = self._take(1, self.per_batch[1])
        rows = np.concatenate([controls, perturbed])
        weights = np.concatenate(
            [np.full(len(controls), self.stratum_weights[0]), np.full(len(perturbed), self.stratum_weights[1])]
        )
        return rows, weights


def sequential_batches(rows: np.ndarray, batch_size: int):
    """Consecutive slices of ``rows`` (evaluation and export), in order."""
    for start in range(0, len(rows), batch_size):
        yield rows[start : start + batch_size]


class DeviceResidentCounts:
    """The whole CSR count matrix held on the compute device (the fast path on a GPU when
    the screen fits in its memory): a minibatch is gathered and densified there, with no
    host-to-device copy per step."""

    def __init__(self, matrix, cells: CellArrays, device: torch.device):
        csr = sp.csr_matrix(matrix, dtype=np.float32)
        if not csr.has_canonical_format or not csr.data.all():
            # the likelihood's nonzero entries must be unique and nonzero
            csr = csr.copy()  # csr_matrix(...) shares the caller's arrays
            csr.sum_duplicates()
            csr.eliminate_zeros()
        self.device = device
        self.indptr = torch.from_numpy(csr.indptr.astype(np.int64)).to(device)
        self.indices = torch.from_numpy(csr.indices.astype(np.int64)).to(device)
        self.values = torch.from_numpy(csr.data.astype(np.float32)).to(device)
        self.n_genes = csr.shape[1]
        self.cells = {
            "covariates": torch.from_numpy(cells.covariates).to(device),
            "nuisance": torch.from_numpy(cells.nuisance).to(device),
            "is_control": torch.from_numpy(cells.is_control).to(device),
            "label": torch.from_numpy(cells.label).to(device),
            "library_group": torch.from_numpy(cells.library_group).to(device),
        }

    @staticmethod
    def nbytes(matrix) -> int:
        """Device memory the matrix would take (int64 indices, float32 values)."""
        nnz = matrix.nnz if sp.issparse(matrix) else int(np.count_nonzero(matrix))
        return nnz * 12 + (matrix.shape[0] + 1) * 8

    def csr_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The given rows as a sparse CSR tensor on the device."""
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        crow = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)])
        offset = torch.repeat_interleave(starts - crow[:-1], lengths)
        entry = torch.arange(int(crow[-1]), device=self.device) + offset
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(crow, self.indices[entry], self.values[entry],
                                           size=(len(rows), self.n_genes))

    def batch(self, rows: np.ndarray, stratum_weight: np.ndarray, plate_index: np.ndarray) -> dict[str, torch.Tensor]:
        rows_t = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)
        tensors = {name: value[rows_t] for name, value in self.cells.items()}
        tensors["counts"] = self.csr_rows(rows_t)
        tensors["stratum_weight"] = torch.from_numpy(stratum_weight.astype(np.float32)).to(self.device)
        tensors["index"] = torch.from_numpy(plate_index.astype(np.int64)).to(self.device)
        return tensors


def prefetch(iterator, depth: int = 2):
    """Run ``iterator`` in a background thread, ``depth`` items ahead: reading and
    densifying the next minibatch overlaps with the current step (numpy, scipy and torch
    release the GIL in their heavy parts)."""
    import queue
    import threading

    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in iterator:
                if stop.is_set():
                    return
                items.put(item)
        except BaseException as error:  # noqa: BLE001 - re-raised in the consumer
            items.put(error)
        finally:
            items.put(done)

    thread = threading.Thread(target=work, daemon=True, name="pertcontrast-prefetch")
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


class ShuffleBufferEpoch:
    """One out-of-core epoch: the file is cut into contiguous blocks of ``block_rows``
    cells; blocks are visited in random order, ``blocks_per_buffer`` at a time. Each buffer
    is read with sequential slice reads, kept as CSR in memory, and served as stratified
    minibatches (controls in the fixed proportion, weights from the whole training set).
    Peak memory is one buffer, whatever the number of cells. Mixing several random blocks
    per buffer keeps batches varied even when the file is sorted (by lane, by guide...).
    """

    def __init__(self, counts: CountRows, cells: CellArrays, train_rows: np.ndarray, batch_size: int,
                 control_fraction: float, rng: np.random.Generator, block_rows: int = 4096,
                 blocks_per_buffer: int = 8):
        self.counts, self.cells, self.rng = counts, cells, rng
        self.batch_size, self.control_fraction = batch_size, control_fraction
        self.train_rows = np.sort(train_rows)
        is_control = cells.is_control[self.train_rows]
        self.population = (int(is_control.sum()), int((~is_control).sum()))
        n_blocks = math.ceil(counts.n_obs / block_rows)
        order = rng.permutation(n_blocks)
        self.buffers = []
        for start in range(0, n_blocks, blocks_per_buffer):
            blocks = np.sort(order[start : start + blocks_per_buffer])
            rows = np.concatenate([
                self.train_rows[np.searchsorted(self.train_rows, b * block_rows):
                                np.searchsorted(self.train_rows, (b + 1) * block_rows)]
                for b in blocks
            ])
            n_controls = int(cells.is_control[rows].sum())
            n_perturbed = len(rows) - n_controls
            if n_controls and n_perturbed:  # a buffer without both kinds cannot be stratified
                per_batch = split_batch(batch_size, control_fraction, n_controls, n_perturbed)
                self.buffers.append((blocks, rows, steps_for(per_batch, n_controls, n_perturbed)))
        self.block_rows = block_rows

    @property
    def steps(self) -> int:
        return sum(steps for _, _, steps in self.buffers)

    def _read(self, blocks: np.ndarray, rows: np.ndarray) -> CountRows:
        parts = []
        for b in blocks:
            start = int(b) * self.block_rows
            block = self.counts.block(start, min(start + self.block_rows, self.counts.n_obs))
            keep = rows[(rows >= start) & (rows < start + self.block_rows)] - start
            parts.append(block[keep])
        stacked = sp.vstack(parts, format="csr") if sp.issparse(parts[0]) else np.vstack(parts)
        return CountRows(stacked, self.counts.gene_index)

    def __iter__(self):
        """Yields ``(buffer_counts, buffer_cells, local_rows, weights, global_rows)``."""
        for blocks, rows, steps in self.buffers:
            buffer_counts = self._read(blocks, rows)
            local_cells = self.cells.rows(rows)
            local = np.arange(len(rows))
            controls, perturbed = local[local_cells.is_control], local[~local_cells.is_control]
            batches = StratifiedBatches(controls, perturbed, self.batch_size, self.control_fraction,
                                        self.rng, population=self.population)
            for _ in range(steps):
                local_rows, weights = batches.next_batch()
                yield buffer_counts, local_cells, local_rows, weights, rows[local_rows]
