"""The model core: set up from AnnData, fit, latents, save and load.

:class:`BaseContrastiveModel` is what the pipeline's steps use (``fit`` trains, untracked;
the command line tracks a run itself). Users work with its subclass
:class:`pertcontrast.ContrastiveModel` (``pertcontrast.api``), which adds the
scvi-tools-shaped analysis methods and an MLflow-tracked ``train``; it sits above the
analysis and tracking layers, so this core never imports them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pertcontrast.versions import __version__
from pertcontrast.data.loader import CellArrays, CountRows, csr_tensor, sequential_batches
from pertcontrast.data.layers import counts_view
from pertcontrast.data.encoding import DataEncoding
from pertcontrast.data.preprocess.checks import CELL_CYCLE_COLUMNS
from pertcontrast.data.screen_files import perturbation_column, recorded_preprocessing  # noqa: F401 - re-exported
from pertcontrast.errors import InputDataError, ModelLoadError, OutputExistsError, ParameterError
from pertcontrast.io import atomic_path, write_json_atomic
from pertcontrast.module.architecture import Architecture
from pertcontrast.module.contrastive import ContrastiveModule

log = logging.getLogger(__name__)

from pertcontrast.model_folder import (  # noqa: F401 - the folder's names, re-exported
    CONFIG_FILE,
    FORMAT_VERSION,
    HISTORY_FILE,
    SPLIT_FILE,
    WEIGHTS_FILE,
    read_model_folder,
)


def perturbation_settings(adata, perturbation_key, control_label, source: str) -> tuple[str, str]:
    """The perturbation column and control label: as given, else as ``preprocess``
    recorded them; a clear error when neither says."""
    return perturbation_column(recorded_preprocessing(adata), perturbation_key, control_label, source)


class BaseContrastiveModel:
    """Contrastive VAE for a Perturb-seq screen (background and salient latents): set-up,
    fitting, latents, save and load."""

    def __init__(self, encoding: DataEncoding, architecture: Architecture, module: ContrastiveModule, adata=None):
        self.encoding = encoding
        self.architecture = architecture
        self.module = module
        self.adata = adata  # the training cells, raw counts in X (see layer)
        self.layer: str | None = None  # where the API methods read counts in the user's AnnData (None: X)
        self.source_adata = adata  # the AnnData given by the user (the API methods' default)
        self.history: pd.DataFrame | None = None
        self.training: dict = {}
        # each training cell's role: train, validation or decoy (controls trained as perturbed)
        self.cell_split: pd.Series | None = None

    # -- set-up -------------------------------------------------------------------------
    @classmethod
    def setup_anndata(
        cls,
        adata,
        layer: str | None = None,
        perturbation_key: str | None = None,
        control_label: str | None = None,
        batch_key: str | None = None,
        categorical_covariate_keys=None,
        continuous_covariate_keys=None,
        **kwargs,
    ) -> "BaseContrastiveModel":
        """Set up a model for ``adata`` the scvi-tools way: raw counts in ``layers[layer]``
        (or ``X`` when ``layer`` is None), the covariates by key. Returns the untrained
        model (unlike scvi-tools, which returns None and builds the model in a second call).
        Other keywords as :meth:`from_anndata` (``seed``, architecture fields)."""
        return cls.from_anndata(adata, perturbation_key, control_label, batch_key, categorical_covariate_keys,
                                continuous_covariate_keys, layer=layer, **kwargs)

    @classmethod
    def from_anndata(
        cls,
        adata,
        perturbation_key: str | None = None,
        control_label: str | None = None,
        batch_key: str | None = None,
        categorical_covariate_keys=None,
        continuous_covariate_keys=None,
        seed: int = 0,
        source: str = "input",
        layer: str | None = None,
        nuisance_keys=None,
        **architecture,
    ) -> "BaseContrastiveModel":
        """Set up a model for ``adata`` (raw counts in ``X``, or in ``layers[layer]``: read
        there, never copied or densified, and ``adata`` is left as it is). Keys not given are read from
        what ``pertcontrast preprocess`` recorded in ``adata.uns["pertcontrast"]``.
        ``architecture``: fields of :class:`~pertcontrast.module.architecture.Architecture`
        (``n_background=16``, ``likelihood="nb"``...); the others keep their defaults.
        ``nuisance_keys``: numeric columns the ``nuisance`` term keeps out of the salient
        latent (default: ``S_score`` and ``G2M_score`` when ``obs`` has them)."""
        from pertcontrast.data import validate
        from pertcontrast.module.architecture import architecture_defaults

        unknown = sorted(set(architecture) - set(architecture_defaults()))
        if unknown:
            raise ParameterError(f"unknown architecture setting(s) {', '.join(unknown)}; "
                                 f"choose from {', '.join(architecture_defaults())}.")
        settings = {**architecture_defaults(), **{k: v for k, v in architecture.items() if v is not None}}
        user_adata, adata = adata, counts_view(adata, layer, source)

        recorded = recorded_preprocessing(adata)
        perturbation_key, control_label = perturbation_settings(adata, perturbation_key, control_label, source)
        categorical = list(categorical_covariate_keys if categorical_covariate_keys is not None
                           else recorded.get("categorical_covariate_keys", []))
        if batch_key and batch_key not in categorical:
            categorical.insert(0, batch_key)
        continuous = list(continuous_covariate_keys if continuous_covariate_keys is not None
                          else recorded.get("continuous_covariate_keys", []))
        _check_architecture(settings)
        validate.check_unique_names(adata.var_names, "gene", source)
        validate.check_perturbations(adata.obs, perturbation_key, control_label, source,
                                     min_control_cells=min(validate.MIN_CONTROL_CELLS, 10))
        for key in categorical + continuous:
            param = ("batch_key" if key == batch_key else
                     "categorical_covariate_keys" if key in categorical else "continuous_covariate_keys")
            validate.check_obs_column(adata.obs, key, source, "covariate", param)
        if nuisance_keys is None:  # the cell-cycle scores, where 'preprocess' could compute them
            nuisance_keys = [key for key in CELL_CYCLE_COLUMNS if key in adata.obs
                             and pd.api.types.is_numeric_dtype(adata.obs[key]) and adata.obs[key].notna().all()]
        for key in nuisance_keys:
            validate.check_obs_column(adata.obs, key, source, "nuisance", "nuisance_keys")
            if not pd.api.types.is_numeric_dtype(adata.obs[key]):
                raise InputDataError(f"{source}: nuisance column '{key}' is not numeric; name numeric columns "
                                     "with {param} (e.g. S_score, G2M_score).", param="nuisance_keys")
        encoding = DataEncoding.from_obs(
            adata.obs, adata.var_names, perturbation_key, control_label, categorical, continuous, list(nuisance_keys)
        )
        arch = Architecture(
            n_genes=adata.n_vars, n_covariates=encoding.n_covariates, n_labels=len(encoding.perturbations),
            n_library_groups=len(encoding.library_groups), **settings,
        )
        loc, scale = _library_prior(adata, encoding)
        # Initial weights come from their own seeded stream: the same seed, the same model.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = ContrastiveModule(arch, loc, scale)
        model = cls(encoding, arch, module, adata)
        model.layer, model.source_adata = layer, user_adata
        return model

    # -- training -----------------------------------------------------------------------
    def fit(
        self,
        settings=None,
        device: str = "auto",
        checkpoint_dir: str | Path | None = None,
        callbacks=(),
        progress: bool = True,
        **overrides,
    ):
        """Train on the AnnData given to :meth:`from_anndata`, untracked; returns a
        TrainingResult. What ``pertcontrast train`` calls (it tracks the run itself, see
        :mod:`pertcontrast.tracking.session`); ``ContrastiveModel.train`` tracks it from
        Python. ``settings`` is a :class:`~pertcontrast.train.settings.TrainingSettings`;
        keyword overrides (``max_epochs=50``...) replace single fields."""
        from pertcontrast.data import validate
        from pertcontrast.train.checkpoint import checkpoint_path
        from pertcontrast.train.settings import TrainingSettings, settings_hash
        from pertcontrast.train.trainer import Trainer, TrainingData, resolve_device, split_cells

        if self.adata is None:
            raise ParameterError("this model has no training data; create it with ContrastiveModel.from_anndata.")
        settings = replace(settings or TrainingSettings(), **overrides)
        if settings.classification_weight > 0 and not self.architecture.classifier:
            raise ParameterError("needs a model set up with a classifier (ContrastiveModel.from_anndata(..., "
                                 "classifier=True)).", param="classification_weight")
        validate.check_counts(self.adata.X, "training data")
        if settings.nuisance_weight > 0 and not self.encoding.nuisance_covariates:
            log.warning("no nuisance columns (no cell-cycle scores S_score/G2M_score in obs): the nuisance "
                        "term is off; score the cell cycle when preprocessing, or name numeric columns as "
                        "nuisance_keys")
        cells = CellArrays.from_encoded(self.encoding.encode_obs(self.adata.obs, nuisance=True))
        split = split_cells(cells.is_control, settings.validation_fraction, settings.decoy_control_fraction,
                            settings.seed)
        if len(split["decoy"]):  # decoys: controls that get the perturbed cells' objective
            cells.is_control = cells.is_control.copy()
            cells.is_control[split["decoy"]] = False
        train_rows = np.union1d(split["train"], split["decoy"])
        data = TrainingData(CountRows(self.adata.X), cells, train_rows, split["validation"])
        checkpoint_file = None
        if checkpoint_dir is not None:
            run_hash = settings_hash(
                settings.to_dict(), asdict(self.architecture), self.encoding.to_dict(),
                {"n_obs": int(self.adata.n_obs), "first": str(self.adata.obs_names[0]),
                 "last": str(self.adata.obs_names[-1])},
            )
            checkpoint_file = checkpoint_path(checkpoint_dir, run_hash)
        trainer = Trainer(
            self.module, data, settings, resolve_device(device), checkpoint_file, tuple(callbacks), progress
        )
        result = trainer.fit()
        self.module.cpu()
        self.history = result.history
        self.training = {
            "settings": settings.to_dict(),
            "device": str(trainer.device),
            "max_epochs": trainer.max_epochs,
            "steps_per_epoch": trainer.steps_per_epoch,
            "warmup_steps": trainer.warmup_steps,
            "epochs_run": int(len(result.history)),
            "best_epoch": result.best_epoch,
            # what early stopping watched, per cell: compares runs of a sweep
            "best_validation_objective": result.best_monitored if math.isfinite(result.best_monitored) else None,
            "stopped_early": result.stopped_early,
            "resumed_from_epoch": result.resumed_from_epoch,
            "seconds": result.seconds,
            **{f"n_{name}": int(len(rows)) for name, rows in split.items()},
        }
        roles = np.full(self.adata.n_obs, "train", dtype=object)
        for name in ("validation", "decoy"):
            roles[split[name]] = name
        self.cell_split = pd.Series(roles, index=self.adata.obs_names.astype(str), name="split")
        if checkpoint_file is not None:
            result.extra["checkpoint_file"] = str(checkpoint_file)
        return result

    # -- inference ----------------------------------------------------------------------
    def gene_index(self, var_names, source: str = "data") -> np.ndarray | None:
        """Column positions of the model's genes in ``var_names`` (None if identical)."""
        var_names = pd.Index(var_names).astype(str)
        genes = pd.Index(self.encoding.gene_names)
        if var_names.equals(genes):
            return None
        if var_names.has_duplicates:
            duplicated = var_names[var_names.duplicated()][0]
            raise InputDataError(f"{source}: duplicate gene name {duplicated!r}; make gene names unique.")
        positions = var_names.get_indexer(genes)
        missing = genes[positions < 0]
        if len(missing):
            raise ModelLoadError(
                f"{source}: {len(missing)} of the model's {len(genes)} genes are missing "
                f"({', '.join(missing[:10])}{', ...' if len(missing) > 10 else ''}); "
                "use data with the same genes (gene names must match) or retrain."
            )
        return positions

    def split_of(self, obs_names) -> np.ndarray:
        """Each cell's role in training: ``train``, ``validation``, ``decoy`` (controls
        trained as if perturbed) or ``new`` (not in the training data)."""
        names = pd.Index(obs_names).astype(str)
        if self.cell_split is None:
            return np.full(len(names), "new", dtype=object)
        return self.cell_split.reindex(names).fillna("new").to_numpy(dtype=object)

    def latents(
        self,
        adata=None,
        batch_size: int = 4096,
        device: str = "auto",
        sample: bool = False,
        seed: int = 0,
        progress: bool = False,
    ) -> dict[str, np.ndarray]:
        """Posterior means of the background and salient latents for every cell, streamed
        in blocks of ``batch_size`` cells (works on backed AnnData).

        Controls get their encoder's salient mean too (it is near 0 when the model fits).
        With ``sample=True`` one posterior sample of each latent is added.
        """
        from pertcontrast.progress import track
        from pertcontrast.train.trainer import resolve_device

        adata = self.adata if adata is None else adata
        positions = self.gene_index(adata.var_names)
        covariates = self.encoding.encode_obs(adata.obs, require_labels=False)["covariates"]
        rows = CountRows(adata.X, positions)
        torch_device = resolve_device(device)
        module = self.module.to(torch_device).eval()
        n = adata.n_obs
        out = {
            "background": np.zeros((n, self.architecture.n_background), dtype=np.float32),
            "salient": np.zeros((n, self.architecture.n_salient), dtype=np.float32),
        }
        if sample:
            out["background_sample"] = np.zeros_like(out["background"])
            out["salient_sample"] = np.zeros_like(out["salient"])
        generator = torch.Generator(device=torch_device).manual_seed(seed)
        blocks = list(sequential_batches(np.arange(n), batch_size))
        for block in track(blocks, desc="latents", unit="block", enabled=progress):
            counts = csr_tensor(rows.csr_rows(block)).to(torch_device)
            cov = torch.from_numpy(covariates[block]).to(torch_device)
            encoded = module.posterior(counts, cov)
            for name in ("background", "salient"):
                loc = encoded[f"{name}_loc"]
                out[name][block] = loc.cpu().numpy()
                if sample:
                    noise = torch.randn(loc.shape, generator=generator, device=torch_device)
                    out[f"{name}_sample"][block] = (loc + noise * encoded[f"{name}_scale"]).cpu().numpy()
        module.cpu()
        out["salient_norm"] = np.linalg.norm(out["salient"], axis=1)
        return out

    # -- description --------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        """True once the model has been trained (here, or before it was saved)."""
        return self.history is not None or bool(self.training)

    def __repr__(self) -> str:
        arch, encoding = self.architecture, self.encoding
        covariates = [*encoding.categorical_covariates, *encoding.continuous_covariates]
        if self.is_trained:
            epochs = self.training.get("epochs_run", len(self.history) if self.history is not None else "?")
            state = f"trained ({epochs} epochs, best {self.training.get('best_epoch', '?')})"
        else:
            state = "not trained"
        return (
            f"{type(self).__name__}: {state}\n"
            f"  latents: background {arch.n_background}, salient {arch.n_salient}; {arch.n_layers} hidden layer(s) of "
            f"{arch.n_hidden}; {arch.likelihood} likelihood, {arch.library} library"
            f"{', linear salient path' if arch.salient_linear else ''}{', classifier' if arch.classifier else ''}"
            f"{', per-perturbation salient prior' if arch.salient_prior == 'perturbation' else ''}"
            f"{', salient encoder on background residuals' if arch.salient_input == 'residual' else ''}\n"
            f"  data: {len(encoding.gene_names)} genes, {len(encoding.perturbations)} perturbations in "
            f"obs['{encoding.perturbation_key}'] (control '{encoding.control_label}'); covariates: "
            f"{', '.join(covariates) or 'none'}; counts in {f'layers[{self.layer!r}]' if self.layer else 'X'}"
        )

    # -- persistence --------------------------------------------------------------------
    def config(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "pertcontrast_version": __version__,
            "architecture": asdict(self.architecture),
            "registry": self.encoding.to_dict(),
            "anndata_setup": {"layer": self.layer},
            "training": self.training,
        }

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write weights, config and history; config.json is written last and marks a
        complete model folder (each file is written atomically). An existing folder that
        is not empty is refused unless ``overwrite`` (then the model's files in it are
        replaced; other files are left alone)."""
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise OutputExistsError(f"{folder}: is a file, not a folder; choose another path for the model.")
        if not overwrite and folder.is_dir() and any(folder.iterdir()):
            raise OutputExistsError(
                f"{folder}: folder exists and is not empty; pass overwrite=True to write the model into it, "
                "or choose another folder."
            )
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / WEIGHTS_FILE, suffix=".pt") as tmp:
            torch.save(self.module.state_dict(), tmp)
        if self.history is not None:
            with atomic_path(folder / HISTORY_FILE, suffix=".csv") as tmp:
                self.history.to_csv(tmp, index=False)
        if self.cell_split is not None:
            with atomic_path(folder / SPLIT_FILE, suffix=".csv.gz") as tmp:
                self.cell_split.rename_axis("cell").to_csv(tmp)
        write_json_atomic(folder / CONFIG_FILE, self.config())
        return folder

    @classmethod
    def load(cls, folder: str | Path, adata=None) -> "BaseContrastiveModel":
        """Load a model folder written by :meth:`save` (weights loaded with
        ``weights_only=True``: no code from the file is ever run; the folder is checked as a
        whole first). ``adata``: the cells the analysis methods use by default (their genes
        must include the model's)."""
        read = read_model_folder(folder)
        module = ContrastiveModule(read.architecture)
        module.load_state_dict(read.state)  # shapes checked by read_model_folder
        model = cls(read.encoding, read.architecture, module)
        model.layer = (read.config.get("anndata_setup") or {}).get("layer")
        if adata is not None:
            model.gene_index(adata.var_names, "adata")  # a clear error now, not at the first analysis
            model.adata, model.source_adata = counts_view(adata, model.layer, "adata"), adata
        model.training = read.config.get("training", {})
        model.history, model.cell_split = read.history, read.cell_split
        return model


def _check_architecture(settings: dict) -> None:
    for name in ("n_background", "n_salient", "n_hidden", "n_layers"):
        if settings[name] < 1:
            raise ParameterError(f"must be at least 1 (got {settings[name]}).", param=name)
    if not 0 <= settings["dropout"] < 1:
        raise ParameterError(f"must be in [0, 1) (got {settings['dropout']}).", param="dropout")


def _library_prior(adata, encoding: DataEncoding) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd of log total counts per library group (the latent library's prior)."""
    totals = np.zeros(adata.n_obs)
    for block in sequential_batches(np.arange(adata.n_obs), 20_000):
        totals[block] = np.asarray(adata.X[int(block[0]) : int(block[-1]) + 1].sum(axis=1)).ravel()
    log_totals = np.log(np.maximum(totals, 1.0))
    groups = encoding.encode_obs(adata.obs, require_labels=False)["library_group"]
    loc = np.zeros(len(encoding.library_groups), dtype=np.float32)
    scale = np.ones(len(encoding.library_groups), dtype=np.float32)
    for g in range(len(loc)):
        values = log_totals[groups == g]
        if len(values):
            loc[g] = values.mean()
            scale[g] = max(values.std(), 1e-2) if len(values) > 1 else 1.0
    if not math.isfinite(float(loc.sum())):
        raise InputDataError("library sizes could not be computed; check the count matrix.")
    return loc, scale
