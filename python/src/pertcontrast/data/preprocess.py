"""Preprocessing a screen for training: validation, QC, cell-cycle scores, highly variable
genes. Counts stay raw and sparse (CSR); the settings are recorded in
``uns["pertcontrast"]`` so ``train`` and ``export`` need not be told again."""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pertcontrast.data import validate
from pertcontrast.errors import InputDataError, ParameterError

log = logging.getLogger("pertcontrast")
UNS_KEY = "pertcontrast"
ENSEMBL_PATTERN = re.compile(r"^ENS[A-Z]*G\d{6,}")
CELL_CYCLE_COLUMNS = ("S_score", "G2M_score")
PHASES = ["G1", "S", "G2M"]


@dataclass(frozen=True)
class PreprocessSettings:
    perturbation_key: str
    control_label: str
    batch_key: str | None = None
    categorical_covariate_keys: tuple[str, ...] = ()
    continuous_covariate_keys: tuple[str, ...] = ()
    min_counts: int = 200
    min_genes: int = 100
    max_pct_mito: float = 25.0
    min_cells_per_gene: int = 3
    n_top_genes: int = 2000
    keep_target_genes: bool = True
    target_gene_key: str | None = None
    min_control_cells: int = validate.MIN_CONTROL_CELLS
    min_cells_per_perturbation: int = 20
    score_cell_cycle: bool = True
    gene_symbol_key: str | None = None
    mito_prefix: str = "MT-"

    def __post_init__(self):
        if self.n_top_genes < 10:
            raise ParameterError(f"--n-top-genes must be at least 10 (got {self.n_top_genes}).")
        if not 0 < self.max_pct_mito <= 100:
            raise ParameterError(f"--max-pct-mito must be in (0, 100] (got {self.max_pct_mito}).")
        for name in ("min_counts", "min_genes", "min_cells_per_gene", "min_control_cells", "min_cells_per_perturbation"):
            if getattr(self, name) < 0:
                raise ParameterError(f"--{name.replace('_', '-')} must be 0 or more.")

    @property
    def all_categorical_keys(self) -> tuple[str, ...]:
        keys = (self.batch_key,) if self.batch_key else ()
        return keys + tuple(k for k in self.categorical_covariate_keys if k != self.batch_key)


@dataclass
class PreprocessReport:
    n_cells_in: int = 0
    n_genes_in: int = 0
    dropped_empty_cells: int = 0
    dropped_empty_genes: int = 0
    dropped_qc_cells: int = 0
    dropped_rare_genes: int = 0
    dropped_perturbations: dict = field(default_factory=dict)
    cell_cycle: str = "not scored"
    n_cells_out: int = 0
    n_genes_out: int = 0
    n_controls: int = 0
    n_perturbations: int = 0
    target_genes_kept: int = 0

    def lines(self) -> list[str]:
        out = [
            f"cells: {self.n_cells_in} in, {self.n_cells_out} kept "
            f"({self.dropped_empty_cells} all-zero, {self.dropped_qc_cells} failed QC)",
            f"genes: {self.n_genes_in} in, {self.n_genes_out} kept "
            f"({self.dropped_empty_genes} all-zero, {self.dropped_rare_genes} in too few cells; "
            f"{self.target_genes_kept} perturbation targets kept)",
            f"controls: {self.n_controls}; perturbations: {self.n_perturbations}",
            f"cell cycle: {self.cell_cycle}",
        ]
        if self.dropped_perturbations:
            dropped = ", ".join(f"{k} ({v} cells)" for k, v in list(self.dropped_perturbations.items())[:10])
            out.append(f"dropped perturbations with too few cells: {dropped}")
        return out


def validate_input(adata, settings: PreprocessSettings, source: str) -> None:
    """Everything that makes an input unusable, checked before any work."""
    validate.check_unique_names(adata.obs_names, "cell", source)
    validate.check_unique_names(adata.var_names, "gene", source)
    validate.check_counts(adata.X, source)
    validate_obs(adata.obs, settings, source)


def validated_obs_keys(settings: PreprocessSettings) -> list[str]:
    """The obs columns that :func:`validate_obs` reads."""
    keys = [settings.perturbation_key, *settings.all_categorical_keys]
    computed = CELL_CYCLE_COLUMNS if settings.score_cell_cycle else ()
    keys += [k for k in settings.continuous_covariate_keys if k not in computed]
    return list(dict.fromkeys(keys))


def validate_obs(obs: pd.DataFrame, settings: PreprocessSettings, source: str) -> None:
    """The perturbation column, the controls and the covariate columns."""
    validate.check_perturbations(
        obs, settings.perturbation_key, settings.control_label, source, settings.min_control_cells
    )
    for key in settings.all_categorical_keys:
        flag = "--batch-key" if key == settings.batch_key else "--categorical-covariate"
        validate.check_obs_column(obs, key, source, "covariate", flag)
    for key in settings.continuous_covariate_keys:
        if key in CELL_CYCLE_COLUMNS and settings.score_cell_cycle:
            continue  # computed below; usable as covariates ("regress out" the cycle)
        validate.check_obs_column(obs, key, source, "covariate", "--continuous-covariate")
        values = pd.to_numeric(obs[key], errors="coerce")
        if values.isna().any() or not np.isfinite(values.to_numpy(dtype=float)).all():
            raise InputDataError(
                f"{source}: continuous covariate column '{key}' has non-numeric or infinite "
                "values; fix them or pass it as --categorical-covariate."
            )


def _drop_empty(adata, report: PreprocessReport):
    cell_totals = np.asarray(adata.X.sum(axis=1)).ravel()
    gene_totals = np.asarray(adata.X.sum(axis=0)).ravel()
    report.dropped_empty_cells = int((cell_totals == 0).sum())
    report.dropped_empty_genes = int((gene_totals == 0).sum())
    if report.dropped_empty_cells:
        log.warning("dropped %d all-zero cells", report.dropped_empty_cells)
    if report.dropped_empty_genes:
        log.warning("dropped %d all-zero genes", report.dropped_empty_genes)
    return adata[cell_totals > 0, gene_totals > 0].copy()


def _qc(adata, settings: PreprocessSettings, report: PreprocessReport):
    X = adata.X
    totals = np.asarray(X.sum(axis=1)).ravel()
    n_genes = np.asarray((X > 0).sum(axis=1)).ravel()
    mito = mito_mask(_symbols(adata, settings), settings)
    mito_counts = np.asarray(X[:, mito].sum(axis=1)).ravel() if mito.any() else np.zeros(len(totals))
    adata.obs["total_counts"] = totals
    adata.obs["n_genes_by_counts"] = n_genes
    adata.obs["pct_counts_mt"] = 100.0 * mito_counts / np.maximum(totals, 1)
    keep = (totals >= settings.min_counts) & (n_genes >= settings.min_genes) & (
        adata.obs["pct_counts_mt"].to_numpy() <= settings.max_pct_mito
    )
    report.dropped_qc_cells = int((~keep).sum())
    adata = adata[keep].copy()
    cells_per_gene = np.asarray((adata.X > 0).sum(axis=0)).ravel()
    common = cells_per_gene >= settings.min_cells_per_gene
    report.dropped_rare_genes = int((~common).sum())
    return adata[:, common].copy()


def _drop_small_perturbations(adata, settings: PreprocessSettings, report: PreprocessReport):
    labels = adata.obs[settings.perturbation_key].astype(str)
    counts = labels.value_counts()
    small = counts[(counts < settings.min_cells_per_perturbation) & (counts.index != settings.control_label)]
    if len(small):
        report.dropped_perturbations = {str(k): int(v) for k, v in small.items()}
        log.warning(
            "dropped %d perturbations with fewer than %d cells: %s",
            len(small), settings.min_cells_per_perturbation, ", ".join(map(str, small.index[:10])),
        )
        adata = adata[~labels.isin(small.index).to_numpy()].copy()
    return adata


def _symbols(adata, settings: PreprocessSettings) -> pd.Series:
    return gene_symbols(adata.var, settings)


def gene_symbols(var: pd.DataFrame, settings: PreprocessSettings) -> pd.Series:
    """Gene symbols (``--gene-symbol-key`` or the var names), positionally indexed."""
    if settings.gene_symbol_key:
        if settings.gene_symbol_key not in var:
            raise InputDataError(
                f"var has no column '{settings.gene_symbol_key}' (--gene-symbol-key); "
                f"var columns: {', '.join(var.columns) or 'none'}."
            )
        return var[settings.gene_symbol_key].astype(str).reset_index(drop=True)
    return pd.Series(var.index.astype(str))


def mito_mask(symbols: pd.Series, settings: PreprocessSettings) -> np.ndarray:
    return symbols.str.upper().str.startswith(settings.mito_prefix.upper()).to_numpy()


def _score_cell_cycle(adata, settings: PreprocessSettings, report: PreprocessReport) -> None:
    import scanpy as sc

    symbols = _symbols(adata, settings)
    phases = cell_cycle_marker_phases(symbols)
    if not enough_cell_cycle_markers(symbols, phases, report):
        return
    normalised = sc.AnnData(X=adata.X.astype(np.float32), obs=pd.DataFrame(index=adata.obs_names))
    normalised.var_names = pd.Index(symbols.to_numpy()).astype(str)
    normalised.var_names_make_unique()
    sc.pp.normalize_total(normalised, target_sum=1e4)
    sc.pp.log1p(normalised)
    names = normalised.var_names.to_numpy()
    s_genes = names[(phases == "S").to_numpy()].tolist()
    g2m_genes = names[(phases == "G2M").to_numpy()].tolist()
    sc.tl.score_genes_cell_cycle(normalised, s_genes=s_genes, g2m_genes=g2m_genes, random_state=0)
    for column in ("S_score", "G2M_score", "phase"):
        adata.obs[column] = normalised.obs[column].to_numpy()
    adata.obs["phase"] = pd.Categorical(adata.obs["phase"], categories=PHASES)


def cell_cycle_marker_phases(symbols: pd.Series) -> pd.Series:
    """'S' or 'G2M' for each shipped marker gene (previous symbols included), else NaN."""
    from pertcontrast.data.simulate import cell_cycle_gene_table

    lookup = {}
    for row in cell_cycle_gene_table().itertuples():
        lookup[row.gene.upper()] = row.phase
        if row.previous_symbol:
            lookup[row.previous_symbol.upper()] = row.phase
    return symbols.str.upper().map(lookup)


def enough_cell_cycle_markers(symbols: pd.Series, phases: pd.Series, report: PreprocessReport) -> bool:
    """Whether scoring can go ahead; records (and warns) why not, or with how many markers."""
    n_s, n_g2m = int((phases == "S").sum()), int((phases == "G2M").sum())
    if n_s < 5 or n_g2m < 5:
        looks_like_ids = symbols.str.match(ENSEMBL_PATTERN).mean() > 0.5
        hint = (
            "gene names look like Ensembl IDs; pass --gene-symbol-key with the var column of symbols"
            if looks_like_ids
            else "too few marker genes found"
        )
        report.cell_cycle = f"skipped ({hint}; {n_s} S and {n_g2m} G2M markers)"
        log.warning("cell-cycle scoring skipped: %s", hint)
        return False
    report.cell_cycle = f"scored with {n_s} S and {n_g2m} G2M markers"
    return True


def _target_genes(adata, settings: PreprocessSettings) -> set[str]:
    return target_genes(adata.obs, adata.var_names, settings)


def target_genes(obs: pd.DataFrame, var_names: pd.Index, settings: PreprocessSettings) -> set[str]:
    """The perturbations' target genes present among ``var_names``."""
    if settings.target_gene_key:
        validate.check_obs_column(obs, settings.target_gene_key, "input", "target gene", "--target-gene-key")
        candidates = set(obs[settings.target_gene_key].astype(str))
    else:
        candidates = set(obs[settings.perturbation_key].astype(str))
    candidates.discard(settings.control_label)
    return candidates & set(var_names.astype(str))


def _highly_variable(adata, settings: PreprocessSettings, report: PreprocessReport):
    import scanpy as sc

    n_top = min(settings.n_top_genes, adata.n_vars)
    hvg = sc.pp.highly_variable_genes(
        adata, flavor="seurat_v3", n_top_genes=n_top, batch_key=None, inplace=False, span=0.3
    )
    keep = hvg["highly_variable"].to_numpy()
    adata.var["highly_variable"] = keep
    adata.var["highly_variable_rank"] = hvg["highly_variable_rank"].to_numpy()
    targets = _target_genes(adata, settings) if settings.keep_target_genes else set()
    is_target = adata.var_names.isin(list(targets))
    adata.var["is_perturbation_target"] = is_target
    report.target_genes_kept = int(is_target.sum())
    return adata[:, keep | is_target].copy()


def preprocess(adata, settings: PreprocessSettings, source: str = "input"):
    """Validate and prepare a screen; returns ``(prepared AnnData, PreprocessReport)``."""
    report = PreprocessReport(n_cells_in=adata.n_obs, n_genes_in=adata.n_vars)
    validate_input(adata, settings, source)
    adata = adata.copy() if adata.is_view else adata
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata = _drop_empty(adata, report)
    adata = _qc(adata, settings, report)
    adata = _drop_small_perturbations(adata, settings, report)
    validate.check_perturbations(
        adata.obs, settings.perturbation_key, settings.control_label,
        f"{source} (after QC)", settings.min_control_cells,
    )
    if settings.score_cell_cycle:
        _score_cell_cycle(adata, settings, report)
    adata = _highly_variable(adata, settings, report)
    labels = adata.obs[settings.perturbation_key].astype(str)
    adata.obs[settings.perturbation_key] = pd.Categorical(labels)
    adata.obs["is_control"] = (labels == settings.control_label).to_numpy()
    report.n_cells_out, report.n_genes_out = adata.n_obs, adata.n_vars
    report.n_controls = int(adata.obs["is_control"].sum())
    report.n_perturbations = int(labels[~adata.obs["is_control"]].nunique())
    adata.uns[UNS_KEY] = recorded_settings(settings, report)
    return adata, report


def recorded_settings(settings: PreprocessSettings, report: PreprocessReport) -> dict:
    """What ``train``/``export`` read back; plain types only (it goes into .h5ad uns)."""
    recorded = {k: v for k, v in asdict(settings).items() if v is not None}
    recorded["categorical_covariate_keys"] = list(settings.all_categorical_keys)
    recorded["continuous_covariate_keys"] = list(settings.continuous_covariate_keys)
    summary = asdict(report)
    summary["dropped_perturbations"] = dict(summary["dropped_perturbations"])
    from pertcontrast import __version__

    return {"settings": recorded, "report": summary, "version": __version__}
