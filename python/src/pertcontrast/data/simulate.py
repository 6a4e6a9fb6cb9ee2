"""A synthetic Perturb-seq screen of raw counts with known truth.

The background is built to dominate, as in a real cell line: a continuous cell cycle
(S and G2/M programs on the Tirosh et al. marker genes plus cycle-associated genes),
clonal sub-states, batches and sequencing depth vary in controls and perturbed cells
alike. Perturbations knock down their target and shift a downstream gene program; some
programs are shared by several perturbations, some perturbations have no effect, and a
fraction of perturbed cells escape (no knock-down, no shift).

Counts are generated in chunks of cells straight into CSR, so the ``large`` preset never
holds a dense cells x genes matrix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pertcontrast.errors import ParameterError

CONTROL_LABEL = "control"
PRESET_NAMES = ("tiny", "standard", "large")


@dataclass(frozen=True)
class SimulationConfig:
    n_cells: int
    n_genes: int
    n_programs: int
    n_perturbations_per_program: int
    n_null_perturbations: int
    n_clones: int
    n_batches: int
    control_fraction: float = 0.2
    escaper_fraction: float = 0.25
    mean_library_size: float = 4000.0
    library_log_sd: float = 0.35
    cycle_strength: float = 2.0
    n_cycle_associated_genes: int = 150
    clone_strength: float = 0.8
    clone_gene_fraction: float = 0.2
    batch_strength: float = 0.3
    n_state_factors: int = 4
    state_strength: float = 0.7
    state_gene_fraction: float = 0.3
    program_size: int = 60
    program_strength: float = 0.8
    chunk_size: int = 5000

    @property
    def n_perturbations(self) -> int:
        return self.n_programs * self.n_perturbations_per_program + self.n_null_perturbations


def preset_config(preset: str, **overrides) -> SimulationConfig:
    """The settings of a named preset, with optional overrides (e.g. ``n_cells``)."""
    if preset == "tiny":
        config = SimulationConfig(
            n_cells=2000, n_genes=800, n_programs=3, n_perturbations_per_program=2,
            n_null_perturbations=1, n_clones=3, n_batches=2, program_size=30,
        )
    elif preset == "standard":
        config = SimulationConfig(
            n_cells=15000, n_genes=3000, n_programs=4, n_perturbations_per_program=5,
            n_null_perturbations=4, n_clones=4, n_batches=3,
        )
    elif preset == "large":
        config = SimulationConfig(
            n_cells=300_000, n_genes=2000, n_programs=8, n_perturbations_per_program=6,
            n_null_perturbations=6, n_clones=5, n_batches=4, mean_library_size=3000.0,
        )
    else:
        raise ParameterError(
            f"--preset {preset!r} is not a preset; choose one of {', '.join(PRESET_NAMES)}."
        )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    config = dataclasses.replace(config, **overrides)
    _check_config(config)
    return config


def _check_config(config: SimulationConfig) -> None:
    if config.n_cells < 50:
        raise ParameterError(f"--n-cells must be at least 50 (got {config.n_cells}).")
    minimum_genes = 200 + config.n_programs * config.program_size
    if config.n_genes < minimum_genes:
        raise ParameterError(
            f"--n-genes must be at least {minimum_genes} for {config.n_programs} programs "
            f"(got {config.n_genes})."
        )
    if not 0.0 < config.control_fraction < 1.0:
        raise ParameterError("control_fraction must be between 0 and 1.")


def _packaged_lines(name: str) -> list[str]:
    text = resources.files("pertcontrast.data.resources").joinpath(name).read_text()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def cell_cycle_gene_table() -> pd.DataFrame:
    """The shipped S and G2/M marker genes (columns gene, phase, previous_symbol)."""
    rows = [line.split("\t") for line in _packaged_lines("cell_cycle_genes.tsv")]
    header, body = rows[0], rows[1:]
    body = [row + [""] * (len(header) - len(row)) for row in body]
    return pd.DataFrame(body, columns=header)


@dataclass
class _ScreenDesign:
    """Everything that is fixed per screen (gene effects, perturbations); cells vary."""

    gene_names: list[str]
    gene_roles: np.ndarray
    base_log_proportion: np.ndarray
    dispersion: np.ndarray
    s_loading: np.ndarray
    g2m_loading: np.ndarray
    clone_effect: np.ndarray
    clone_weights: np.ndarray
    batch_effect: np.ndarray
    batch_library_shift: np.ndarray
    state_loadings: np.ndarray  # (n_state_factors, n_genes)
    perturbations: pd.DataFrame
    perturbation_lfc: np.ndarray  # (n_perturbations, n_genes), log scale
    programs: dict[str, list[str]]


def _design(config: SimulationConfig, rng: np.random.Generator) -> _ScreenDesign:
    cell_cycle = cell_cycle_gene_table()
    s_genes = cell_cycle.loc[cell_cycle.phase == "S", "gene"].tolist()
    g2m_genes = cell_cycle.loc[cell_cycle.phase == "G2M", "gene"].tolist()
    mito_genes = ["MT-ND1", "MT-ND2", "MT-CO1", "MT-CO2", "MT-ATP8", "MT-ATP6", "MT-CO3",
                  "MT-ND3", "MT-ND4L", "MT-ND4", "MT-ND5", "MT-ND6", "MT-CYB"]
    target_pool = _packaged_lines("simulation_target_genes.txt")
    n_perturbations = config.n_perturbations
    targets = [
        target_pool[i] if i < len(target_pool) else f"TARGET{i:04d}" for i in range(n_perturbations)
    ]
    named = s_genes + g2m_genes + mito_genes + targets
    n_other = config.n_genes - len(named)
    if n_other < config.n_programs * config.program_size + config.n_cycle_associated_genes:
        raise ParameterError(f"--n-genes {config.n_genes} is too small for this design.")
    gene_names = named + [f"GENE{i:05d}" for i in range(n_other)]
    roles = np.array(
        ["S"] * len(s_genes) + ["G2M"] * len(g2m_genes) + ["mito"] * len(mito_genes)
        + ["target"] * len(targets) + ["other"] * n_other,
        dtype=object,
    )
    n_genes = len(gene_names)
    other = np.flatnonzero(roles == "other")

    base = rng.normal(0.0, 1.0, n_genes)
    base[roles == "mito"] += 2.5
    base[roles == "target"] = rng.normal(1.0, 0.4, len(targets))  # targets are expressed
    dispersion = np.exp(rng.normal(np.log(4.0), 0.5, n_genes))

    s_loading = np.zeros(n_genes)
    g2m_loading = np.zeros(n_genes)
    s_loading[roles == "S"] = config.cycle_strength * rng.uniform(0.7, 1.3, len(s_genes))
    g2m_loading[roles == "G2M"] = config.cycle_strength * rng.uniform(0.7, 1.3, len(g2m_genes))
    shuffled_other = rng.permutation(other)
    cycle_associated = shuffled_other[: config.n_cycle_associated_genes]
    s_loading[cycle_associated] = rng.normal(0.0, 0.35 * config.cycle_strength, len(cycle_associated))
    g2m_loading[cycle_associated] = rng.normal(0.0, 0.35 * config.cycle_strength, len(cycle_associated))
    roles[cycle_associated] = "cycle"

    clone_effect = np.zeros((config.n_clones, n_genes))
    for clone in range(config.n_clones):
        affected = rng.random(n_genes) < config.clone_gene_fraction
        clone_effect[clone, affected] = rng.normal(0.0, config.clone_strength, affected.sum())
    clone_weights = rng.dirichlet(np.full(config.n_clones, 5.0))

    batch_effect = np.zeros((config.n_batches, n_genes))
    for batch in range(config.n_batches):
        affected = rng.random(n_genes) < 0.1
        batch_effect[batch, affected] = rng.normal(0.0, config.batch_strength, affected.sum())
    batch_library_shift = rng.normal(0.0, 0.2, config.n_batches)

    # Continuous sub-states of the line (drift over days of culture): each cell has a
    # Normal score on each factor; each factor moves a random third of the genes.
    state_loadings = np.zeros((config.n_state_factors, n_genes))
    for factor in range(config.n_state_factors):
        affected = rng.random(n_genes) < config.state_gene_fraction
        state_loadings[factor, affected] = rng.normal(0.0, config.state_strength, affected.sum())

    # Program genes come from genes with no cell-cycle role, so the truth stays clean.
    program_pool = shuffled_other[config.n_cycle_associated_genes:]
    programs: dict[str, list[str]] = {}
    program_lfc = np.zeros((config.n_programs, n_genes))
    for k in range(config.n_programs):
        members = program_pool[k * config.program_size : (k + 1) * config.program_size]
        signs = rng.choice([-1.0, 1.0], size=len(members), p=[0.4, 0.6])
        program_lfc[k, members] = signs * rng.uniform(0.6, 1.2, len(members)) * config.program_strength
        programs[f"program_{k + 1}"] = [gene_names[i] for i in members]
        roles[members] = f"program_{k + 1}"

    rows = []
    lfc = np.zeros((n_perturbations, n_genes))
    for p, target in enumerate(targets):
        target_index = gene_names.index(target)
        if p < config.n_programs * config.n_perturbations_per_program:
            program = p // config.n_perturbations_per_program
            strength = rng.uniform(0.8, 1.2)
            lfc[p] = strength * program_lfc[program]
            lfc[p, target_index] = np.log(rng.uniform(0.1, 0.25))
            rows.append((target, target, f"program_{program + 1}", strength, True))
        else:
            # No effect: the target is not expressed in this line, so nothing changes.
            base[target_index] = -7.0
            rows.append((target, target, "none", 0.0, False))
    perturbations = pd.DataFrame(
        rows, columns=["perturbation", "target_gene", "program", "strength", "has_effect"]
    )
    return _ScreenDesign(
        gene_names=gene_names, gene_roles=roles, base_log_proportion=base,
        dispersion=dispersion, s_loading=s_loading, g2m_loading=g2m_loading,
        clone_effect=clone_effect, clone_weights=clone_weights, batch_effect=batch_effect,
        batch_library_shift=batch_library_shift, state_loadings=state_loadings, perturbations=perturbations,
        perturbation_lfc=lfc, programs=programs,
    )


def _cycle_activity(position: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S and G2/M activity along a continuous cycle position in [0, 1), and the phase."""
    s_activity = np.exp(-(((position - 0.57) / 0.12) ** 2))
    g2m_activity = np.exp(-(((position - 0.86) / 0.12) ** 2))
    phase = np.where(position < 0.45, "G1", np.where(position < 0.72, "S", "G2M"))
    return s_activity, g2m_activity, phase


def _cell_table(config: SimulationConfig, design: _ScreenDesign, rng: np.random.Generator) -> pd.DataFrame:
    n = config.n_cells
    perturbations = design.perturbations
    n_pert = len(perturbations)
    is_control = rng.random(n) < config.control_fraction
    pert_index = np.where(is_control, -1, rng.integers(0, n_pert, n))
    has_effect = np.zeros(n, dtype=bool)
    has_effect[~is_control] = perturbations.has_effect.to_numpy()[pert_index[~is_control]]
    escaped = rng.random(n) < config.escaper_fraction
    responder = has_effect & ~escaped
    position = rng.random(n)
    s_activity, g2m_activity, phase = _cycle_activity(position)
    clone = rng.choice(config.n_clones, size=n, p=design.clone_weights)
    state = rng.normal(0.0, 1.0, (n, config.n_state_factors))
    batch = rng.integers(0, config.n_batches, n)
    library = np.exp(
        rng.normal(np.log(config.mean_library_size), config.library_log_sd, n)
        + design.batch_library_shift[batch]
        + 0.3 * g2m_activity  # cells later in the cycle are bigger and yield more UMIs
    )
    labels = np.array([CONTROL_LABEL] + perturbations.perturbation.tolist(), dtype=object)
    programs = perturbations.program.to_numpy()
    truth_program = np.full(n, "none", dtype=object)
    truth_program[responder] = programs[pert_index[responder]]
    return pd.DataFrame(
        {
            "perturbation": pd.Categorical(labels[pert_index + 1], categories=labels),
            "batch": pd.Categorical([f"batch{b + 1}" for b in batch]),
            "truth_perturbation_index": pert_index,
            "truth_phase": pd.Categorical(phase, categories=["G1", "S", "G2M"]),
            "truth_cycle_position": position,
            "truth_s_activity": s_activity,
            "truth_g2m_activity": g2m_activity,
            "truth_clone": pd.Categorical([f"clone{c + 1}" for c in clone]),
            "truth_library_size": library,
            **{f"truth_state_{k + 1}": state[:, k] for k in range(config.n_state_factors)},
            "truth_program": pd.Categorical(truth_program),
            "truth_responder": responder,
            "truth_escaper": has_effect & escaped,
        },
        index=pd.Index([f"cell{i:07d}" for i in range(n)], name="cell"),
    )


def _counts_chunk(
    cells: pd.DataFrame, config: SimulationConfig, design: _ScreenDesign, rng: np.random.Generator
) -> sp.csr_matrix:
    clone = cells["_clone"].to_numpy()
    batch = cells["_batch"].to_numpy()
    logits = (
        design.base_log_proportion[None, :]
        + cells.truth_s_activity.to_numpy()[:, None] * design.s_loading[None, :]
        + cells.truth_g2m_activity.to_numpy()[:, None] * design.g2m_loading[None, :]
        + design.clone_effect[clone]
        + design.batch_effect[batch]
        + cells[[f"truth_state_{k + 1}" for k in range(design.state_loadings.shape[0])]].to_numpy()
        @ design.state_loadings
    )
    responders = cells.truth_responder.to_numpy()
    pert = cells.truth_perturbation_index.to_numpy()
    logits[responders] += design.perturbation_lfc[pert[responders]]
    logits -= logits.max(axis=1, keepdims=True)
    proportions = np.exp(logits)
    proportions /= proportions.sum(axis=1, keepdims=True)
    mean = proportions * cells.truth_library_size.to_numpy()[:, None]
    theta = design.dispersion[None, :]
    counts = rng.poisson(rng.gamma(theta, mean / theta)).astype(np.float32)
    return sp.csr_matrix(counts)


def iter_simulated_chunks(preset: str = "standard", seed: int = 0, cell_seed: int | None = None, **overrides):
    """Yield ``(obs_chunk, csr_chunk)`` pairs, then nothing; see :func:`simulate`.

    The first item yielded is the screen-level ``(var, uns)`` pair. ``seed`` fixes the
    screen's design (genes, programs, effects); ``cell_seed``, when given, draws a fresh
    set of cells from that same design (held-out cells for honest evaluation).
    """
    config = preset_config(preset, **overrides)
    rng = np.random.default_rng(seed)
    design = _design(config, rng)
    if cell_seed is not None:
        rng = np.random.default_rng([seed, cell_seed + 1])
    cells = _cell_table(config, design, rng)
    if cell_seed is not None:
        cells.index = pd.Index([f"cell{cell_seed}_{i:07d}" for i in range(len(cells))], name="cell")
    var = pd.DataFrame(
        {"truth_gene_role": pd.Categorical(design.gene_roles)},
        index=pd.Index(design.gene_names, name="gene"),
    )
    yield var, _truth_uns(config, design, preset, seed)
    cells["_clone"] = cells.truth_clone.cat.codes.to_numpy()
    cells["_batch"] = cells.batch.cat.codes.to_numpy()
    for start in range(0, config.n_cells, config.chunk_size):
        chunk = cells.iloc[start : start + config.chunk_size]
        counts = _counts_chunk(chunk, config, design, rng)
        yield chunk.drop(columns=["_clone", "_batch"]), counts


def _truth_uns(config: SimulationConfig, design: _ScreenDesign, preset: str, seed: int) -> dict:
    return {
        "preset": preset,
        "seed": seed,
        "config": {k: v for k, v in dataclasses.asdict(config).items()},
        "control_label": CONTROL_LABEL,
        "perturbations": design.perturbations,
        "programs": {name: np.array(genes, dtype=object) for name, genes in design.programs.items()},
        "perturbation_lfc": design.perturbation_lfc.astype(np.float32),
        "perturbation_lfc_rows": np.array(design.perturbations.perturbation.tolist(), dtype=object),
    }


def simulate(preset: str = "standard", seed: int = 0, cell_seed: int | None = None, **overrides):
    """Simulate a screen in memory and return an AnnData of raw counts (CSR).

    ``obs`` holds the observed ``perturbation`` and ``batch`` columns and the truth
    (``truth_phase``, ``truth_clone``, ``truth_program``, ``truth_responder``, ...);
    ``uns["truth"]`` the perturbation table, programs and true log fold changes.
    """
    import anndata as ad

    chunks = iter_simulated_chunks(preset, seed, cell_seed, **overrides)
    var, uns = next(chunks)
    obs_parts, count_parts = [], []
    for obs, counts in chunks:
        obs_parts.append(obs)
        count_parts.append(counts)
    obs = pd.concat(obs_parts)
    X = sp.vstack(count_parts, format="csr")
    return ad.AnnData(X=X, obs=obs, var=var, uns={"truth": uns})


def simulate_to_h5ad(
    path, preset: str = "standard", seed: int = 0, cell_seed: int | None = None, progress: bool = False, **overrides
) -> int:
    """Simulate straight to an ``.h5ad`` file chunk by chunk (atomic); returns cells written.

    Peak memory is one chunk of cells, whatever ``n_cells`` is.
    """
    import anndata as ad
    import h5py
    from anndata.io import sparse_dataset, write_elem
    from tqdm.auto import tqdm

    from pertcontrast.io import atomic_path

    chunks = iter_simulated_chunks(preset, seed, cell_seed, **overrides)
    var, uns = next(chunks)
    config = preset_config(preset, **overrides)
    obs_parts = []
    with atomic_path(path, suffix=".h5ad") as tmp:
        # Start from an empty, valid file with the right var, then append CSR row chunks.
        with h5py.File(tmp, "w") as f:
            first_obs, first_counts = next(chunks)
            obs_parts.append(first_obs)
            # 64-bit row pointers: a screen of millions of cells has more than 2^31 counts.
            first_counts.indptr = first_counts.indptr.astype(np.int64)
            write_elem(f, "X", first_counts)
            matrix = sparse_dataset(f["X"])
            bar = tqdm(total=config.n_cells, unit="cell", desc="simulate", disable=not progress)
            bar.update(first_counts.shape[0])
            for obs, counts in chunks:
                matrix.append(counts)
                obs_parts.append(obs)
                bar.update(counts.shape[0])
            bar.close()
            obs = pd.concat(obs_parts)
            write_elem(f, "obs", obs)
            write_elem(f, "var", var)
            write_elem(f, "uns", {"truth": uns})
            write_elem(f, "obsm", {})
            write_elem(f, "varm", {})
            write_elem(f, "obsp", {})
            write_elem(f, "varp", {})
            write_elem(f, "layers", {})
            f.attrs["encoding-type"] = "anndata"
            f.attrs["encoding-version"] = "0.1.0"
    return len(obs)
