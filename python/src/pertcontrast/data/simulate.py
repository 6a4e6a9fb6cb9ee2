"""A synthetic Perturb-seq screen of raw counts with known truth.

The background is built to dominate, as in a real cell line: a continuous cell cycle
(S and G2/M programs on the Tirosh et al. marker genes plus cycle-associated genes),
clonal sub-states, batches and sequencing depth vary in controls and perturbed cells
alike. Perturbations knock down their target and shift a downstream gene program; some
programs are shared by several perturbations, some perturbations have no effect, and a
fraction of perturbed cells escape (no knock-down, no shift).

The harder presets add what real screens have and a model can get wrong: programs of
different sizes and strengths, some of their genes lowly expressed (outside the HVGs),
programs partly aligned with a background axis (a clone's or the G2/M signature),
effects present only in G1 cells, perturbations that knock down their target with no
downstream program, per-perturbation escaper rates up to 50% (``hard``), and over a
hundred perturbations with about a hundred cells each (``many``).

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
PRESET_NAMES = ("tiny", "standard", "hard", "many", "large")


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
    # the harder designs (defaults: off, the screens of the first presets)
    program_size_range: tuple[int, int] | None = None  # per program, instead of program_size
    program_strength_range: tuple[float, float] | None = None  # per program multiplier
    low_expression_program_fraction: float = 0.0  # of each program's genes, from the least expressed
    aligned_program_fraction: float = 0.0  # programs with a component along a background axis
    phase_dependent_fraction: float = 0.0  # of program perturbations: effect in G1 cells only
    n_knockdown_only: int = 0  # perturbations that knock down their target and nothing else
    escaper_fraction_range: tuple[float, float] | None = None  # per perturbation, instead of escaper_fraction

    @property
    def n_perturbations(self) -> int:
        return (self.n_programs * self.n_perturbations_per_program + self.n_null_perturbations
                + self.n_knockdown_only)


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
    elif preset == "hard":
        config = SimulationConfig(
            n_cells=20000, n_genes=3000, n_programs=8, n_perturbations_per_program=2,
            n_null_perturbations=4, n_knockdown_only=2, n_clones=5, n_batches=3, program_strength=0.55,
            program_size_range=(15, 80), program_strength_range=(0.6, 1.4), low_expression_program_fraction=0.3,
            aligned_program_fraction=0.25, phase_dependent_fraction=0.2, escaper_fraction_range=(0.25, 0.5),
        )
    elif preset == "many":
        config = SimulationConfig(
            n_cells=20000, n_genes=3000, n_programs=10, n_perturbations_per_program=11,
            n_null_perturbations=10, n_knockdown_only=5, n_clones=4, n_batches=3, control_fraction=0.15,
            program_size_range=(20, 60), program_strength_range=(0.7, 1.3), escaper_fraction_range=(0.25, 0.4),
        )
    elif preset == "large":
        config = SimulationConfig(
            n_cells=300_000, n_genes=2000, n_programs=8, n_perturbations_per_program=6,
            n_null_perturbations=6, n_clones=5, n_batches=4, mean_library_size=3000.0,
        )
    else:
        raise ParameterError(
            f"{preset!r} is not a preset; choose one of {', '.join(PRESET_NAMES)}.", param="preset"
        )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    config = dataclasses.replace(config, **overrides)
    _check_config(config)
    return config


def _check_config(config: SimulationConfig) -> None:
    if config.n_cells < 50:
        raise ParameterError(f"must be at least 50 (got {config.n_cells}).", param="n_cells")
    largest = config.program_size_range[1] if config.program_size_range else config.program_size
    minimum_genes = 200 + config.n_programs * largest
    if config.n_genes < minimum_genes:
        raise ParameterError(
            f"must be at least {minimum_genes} for {config.n_programs} programs "
            f"(got {config.n_genes}).", param="n_genes"
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
    escaper_rate: np.ndarray  # per perturbation
    phase_dependent: np.ndarray  # per perturbation: effect in G1 cells only


def _design(config: SimulationConfig, rng: np.random.Generator, extra: np.random.Generator) -> _ScreenDesign:
    """``extra`` draws what only the harder designs use, leaving the others' draws alone."""
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
        raise ParameterError(f"{config.n_genes} is too small for this design.", param="n_genes")
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

    # Program genes come from genes with no cell-cycle role, so the truth stays clean; the
    # harder designs draw a share of them from the least expressed genes.
    program_pool = list(shuffled_other[config.n_cycle_associated_genes:])
    sizes = (extra.integers(config.program_size_range[0], config.program_size_range[1] + 1, config.n_programs)
             if config.program_size_range else np.full(config.n_programs, config.program_size))
    strengths = (extra.uniform(*config.program_strength_range, config.n_programs)
                 if config.program_strength_range else np.ones(config.n_programs))
    low_pool = sorted(program_pool, key=lambda g: base[g])[: len(program_pool) // 4]
    programs: dict[str, list[str]] = {}
    program_lfc = np.zeros((config.n_programs, n_genes))
    aligned = extra.random(config.n_programs) < config.aligned_program_fraction
    for k in range(config.n_programs):
        n_low = int(round(sizes[k] * config.low_expression_program_fraction))
        low = [g for g in low_pool if g in set(program_pool)][:n_low]
        rest = [g for g in program_pool if g not in set(low)][: sizes[k] - len(low)]
        members = np.array(low + rest, dtype=np.int64)
        program_pool = [g for g in program_pool if g not in set(members.tolist())]
        signs = rng.choice([-1.0, 1.0], size=len(members), p=[0.4, 0.6])
        program_lfc[k, members] = (signs * rng.uniform(0.6, 1.2, len(members)) * config.program_strength
                                   * strengths[k])
        if aligned[k]:  # part of the effect moves cells along a clone's or the G2/M axis
            axis = clone_effect[extra.integers(config.n_clones)] if extra.random() < 0.5 else g2m_loading
            program_lfc[k] += 0.5 * config.program_strength * axis / max(np.abs(axis).max(), 1e-9)
        programs[f"program_{k + 1}"] = [gene_names[i] for i in members]
        roles[members] = f"program_{k + 1}"

    rows = []
    lfc = np.zeros((n_perturbations, n_genes))
    n_program_perturbations = config.n_programs * config.n_perturbations_per_program
    for p, target in enumerate(targets):
        target_index = gene_names.index(target)
        if p < n_program_perturbations:
            program = p // config.n_perturbations_per_program
            strength = rng.uniform(0.8, 1.2)
            lfc[p] = strength * program_lfc[program]
            lfc[p, target_index] = np.log(rng.uniform(0.1, 0.25))
            rows.append((target, target, f"program_{program + 1}", strength, True, True))
        elif p < n_program_perturbations + config.n_null_perturbations:
            # No effect: the target is not expressed in this line, so nothing changes.
            base[target_index] = -7.0
            rows.append((target, target, "none", 0.0, False, False))
        else:  # the target is knocked down, nothing downstream follows
            lfc[p, target_index] = np.log(extra.uniform(0.1, 0.25))
            rows.append((target, target, "none", 0.0, False, True))
    phase_dependent = np.zeros(n_perturbations, dtype=bool)
    phase_dependent[:n_program_perturbations] = extra.random(n_program_perturbations) < config.phase_dependent_fraction
    escaper_rate = (extra.uniform(*config.escaper_fraction_range, n_perturbations) if config.escaper_fraction_range
                    else np.full(n_perturbations, config.escaper_fraction))
    perturbations = pd.DataFrame(
        rows, columns=["perturbation", "target_gene", "program", "strength", "has_effect", "knockdown"]
    )
    perturbations["phase_dependent"] = phase_dependent
    perturbations["escaper_rate"] = escaper_rate
    return _ScreenDesign(
        gene_names=gene_names, gene_roles=roles, base_log_proportion=base,
        dispersion=dispersion, s_loading=s_loading, g2m_loading=g2m_loading,
        clone_effect=clone_effect, clone_weights=clone_weights, batch_effect=batch_effect,
        batch_library_shift=batch_library_shift, state_loadings=state_loadings, perturbations=perturbations,
        perturbation_lfc=lfc, programs=programs, escaper_rate=escaper_rate, phase_dependent=phase_dependent,
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
    escaped = rng.random(n) < np.where(is_control, 0.0, design.escaper_rate[np.maximum(pert_index, 0)])
    responder = has_effect & ~escaped
    knockdown = np.zeros(n, dtype=bool)
    knockdown[~is_control] = perturbations.knockdown.to_numpy()[pert_index[~is_control]]
    knockdown &= ~escaped
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
            "truth_knockdown": knockdown,
        },
        index=pd.Index([f"cell{i:07d}" for i in range(n)], name="cell"),
    )


def _expected_counts(cells: pd.DataFrame, clone: np.ndarray, batch: np.ndarray, design: _ScreenDesign,
                     responders: np.ndarray) -> np.ndarray:
    """Each cell's expected counts (cells x genes): its background, depth and, for the
    ``responders`` (perturbed cells), its perturbation's effect."""
    logits = (
        design.base_log_proportion[None, :]
        + cells.truth_s_activity.to_numpy()[:, None] * design.s_loading[None, :]
        + cells.truth_g2m_activity.to_numpy()[:, None] * design.g2m_loading[None, :]
        + design.clone_effect[clone]
        + design.batch_effect[batch]
        + cells[[f"truth_state_{k + 1}" for k in range(design.state_loadings.shape[0])]].to_numpy()
        @ design.state_loadings
    )
    pert = cells.truth_perturbation_index.to_numpy()
    effect = design.perturbation_lfc[pert[responders]]
    gated = design.phase_dependent[pert[responders]]
    if gated.any():  # these effects need G1: none in S or G2/M cells
        g1 = 1.0 - np.maximum(cells.truth_s_activity.to_numpy(), cells.truth_g2m_activity.to_numpy())[responders]
        effect[gated] *= g1[gated, None]
    logits[responders] += effect
    logits -= logits.max(axis=1, keepdims=True)
    proportions = np.exp(logits)
    proportions /= proportions.sum(axis=1, keepdims=True)
    return proportions * cells.truth_library_size.to_numpy()[:, None]


def _counts_chunk(
    cells: pd.DataFrame, config: SimulationConfig, design: _ScreenDesign, rng: np.random.Generator
) -> sp.csr_matrix:
    # cells whose target was knocked down: responders, and those of knockdown-only perturbations
    knocked_down = cells.truth_knockdown.to_numpy()
    mean = _expected_counts(cells, cells["_clone"].to_numpy(), cells["_batch"].to_numpy(), design, knocked_down)
    theta = design.dispersion[None, :]
    counts = rng.poisson(rng.gamma(theta, mean / theta)).astype(np.float32)
    return sp.csr_matrix(counts)


def screen_design(preset: str = "standard", seed: int = 0, **overrides) -> _ScreenDesign:
    """The design a preset and seed draw (genes, programs, effects, background loadings,
    dispersions): the truth behind ``simulate(preset, seed, cell_seed=...)``'s cells."""
    config = preset_config(preset, **overrides)
    return _design(config, np.random.default_rng(seed), np.random.default_rng([seed, 1]))


def expected_counts(obs: pd.DataFrame, design: _ScreenDesign, responding: bool) -> np.ndarray:
    """The expected counts (cells x genes, dense: pass a block of cells) of simulated cells
    from their ``obs`` (the truth columns): had every perturbed cell responded
    (``responding``: its perturbation's effect, knockdown included), or had none."""
    clone = obs["truth_clone"].astype(str).str.removeprefix("clone").astype(int).to_numpy() - 1
    batch = obs["batch"].astype(str).str.removeprefix("batch").astype(int).to_numpy() - 1
    perturbed = obs["truth_perturbation_index"].to_numpy() >= 0
    return _expected_counts(obs, clone, batch, design, perturbed & responding)


def iter_simulated_chunks(preset: str = "standard", seed: int = 0, cell_seed: int | None = None, **overrides):
    """Yield ``(obs_chunk, csr_chunk)`` pairs, then nothing; see :func:`simulate`.

    The first item yielded is the screen-level ``(var, uns)`` pair. ``seed`` fixes the
    screen's design (genes, programs, effects); ``cell_seed``, when given, draws a fresh
    set of cells from that same design (held-out cells for honest evaluation).
    """
    config = preset_config(preset, **overrides)
    rng = np.random.default_rng(seed)
    design = _design(config, rng, np.random.default_rng([seed, 1]))  # as screen_design; rng then draws the cells
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
        # lists, not tuples: .h5ad stores lists (the hard and many presets have ranges)
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()},
        "control_label": CONTROL_LABEL,
        "perturbations": design.perturbations,
        "programs": {name: np.array(genes, dtype=object) for name, genes in design.programs.items()},
        "perturbation_lfc": design.perturbation_lfc.astype(np.float32),
        "perturbation_lfc_rows": np.array(design.perturbations.perturbation.tolist(), dtype=object),
        "perturbation_lfc_genes": np.array(design.gene_names, dtype=object),
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
