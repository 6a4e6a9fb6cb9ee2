"""One screen's files, joined by cell: the prepared file (raw counts, the QC and cell-cycle
columns, the recorded settings) and the outputs of the steps that ran on it, each holding
only what its step added (obs columns, obsm arrays, uns entries) plus the cell names.

:class:`ScreenFiles` reads a column or an array from whichever file holds it (a later
step's file wins), after checking that every file has the prepared file's cells; nothing
is loaded until asked for, the counts never unless :meth:`ScreenFiles.anndata` is used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pertcontrast.errors import InputDataError

PREPROCESS_KEY = "pertcontrast"
STEPS = ("preprocess", "export", "responders", "generate")


def _written_by(step: str) -> str:
    return f"'pertcontrast {step}'" if step in STEPS else "the pertcontrast step that wrote it"


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class _H5ad:
    """An .h5ad opened with h5py: obs columns, obsm arrays and uns entries on request."""

    def __init__(self, path: Path, what: str):
        import h5py

        self.path = path
        try:
            self.file = h5py.File(path, "r")
            self.names = self._index()
        except (OSError, KeyError, ValueError, TypeError) as error:
            raise InputDataError(
                f"{path}: cannot be read as an .h5ad ({_first_line(error)}); it may be truncated or corrupt. "
                f"Re-create it with {what}."
            ) from error

    def _index(self) -> pd.Index:
        from anndata.io import read_elem

        obs = self.file["obs"]
        key = obs.attrs["_index"]
        key = key.decode() if isinstance(key, bytes) else str(key)
        return pd.Index(np.asarray(read_elem(obs[key])).astype(str), name=None if key == "_index" else key)

    def group(self, name: str):
        return self.file[name] if name in self.file else {}

    def read(self, group: str, key: str):
        from anndata.io import read_elem

        return read_elem(self.file[group][key])

    def group_names(self) -> list[str]:
        return list(self.file.keys())

    def read_all(self, group: str):
        from anndata.io import read_elem

        return read_elem(self.file[group])

    def close(self) -> None:
        self.file.close()


class _InMemory:
    """A count file that is not an .h5ad (10x .h5, MatrixMarket), read whole."""

    def __init__(self, path: Path):
        from pertcontrast.data.reading import read_anndata

        self.path, self.adata = path, read_anndata(path)
        self.names = pd.Index(self.adata.obs_names.astype(str))

    def group(self, name: str):
        return {"obs": self.adata.obs.columns, "obsm": self.adata.obsm, "uns": self.adata.uns}.get(name, {})

    def read(self, group: str, key: str):
        if group == "obs":
            values = self.adata.obs[key]
            return values.values if isinstance(values.dtype, pd.CategoricalDtype) else values.to_numpy()
        return {"obsm": self.adata.obsm, "uns": self.adata.uns}[group][key]

    def group_names(self) -> list[str]:
        return ["obs", "obsm", "uns", "layers"]

    def read_all(self, group: str):
        return {"obs": self.adata.obs, "obsm": dict(self.adata.obsm), "uns": dict(self.adata.uns),
                "layers": dict(self.adata.layers)}[group]

    def close(self) -> None:
        pass


def recorded_preprocessing(adata) -> dict:
    """Settings ``preprocess`` stored in ``uns["pertcontrast"]`` (empty when absent)."""
    recorded = adata.uns.get("pertcontrast", {}) if hasattr(adata, "uns") else {}
    settings = recorded.get("settings", {}) if isinstance(recorded, dict) else {}
    return {k: (list(v) if isinstance(v, (np.ndarray, tuple)) else v) for k, v in settings.items()}


def perturbation_column(recorded: dict, perturbation_key, control_label, source) -> tuple[str, str]:
    """The perturbation column and the control label: as given, else as 'pertcontrast
    preprocess' recorded them (``recorded``: its settings); a clear error when neither says."""
    perturbation_key = perturbation_key or recorded.get("perturbation_key")
    control_label = control_label or recorded.get("control_label")
    if not perturbation_key or not control_label:
        raise InputDataError(
            f"{source}: no perturbation column/control label given and none recorded by "
            "'pertcontrast preprocess'; pass {param:perturbation_key} and {param:control_label}."
        )
    return str(perturbation_key), str(control_label)


class ScreenFiles:
    """The prepared file and the step outputs of one screen (``outputs``: step name -> path,
    in step order; ``None`` for a step that did not run)."""

    def __init__(self, prepared, **outputs):
        prepared = Path(prepared)
        if not prepared.exists():
            raise InputDataError(f"{prepared}: no such file or folder.")
        self.prepared = prepared
        main = _H5ad(prepared, "'pertcontrast preprocess'") if prepared.suffix == ".h5ad" else _InMemory(prepared)
        self._files: dict[str, object] = {"prepared": main}
        self._order: dict[str, np.ndarray | None] = {"prepared": None}
        try:
            for step, path in outputs.items():
                if path is not None:
                    self._add(step, Path(path))
        except Exception:
            self.close()
            raise

    def _add(self, step: str, path: Path) -> None:
        if path.suffix != ".h5ad" or not path.is_file():
            raise InputDataError(f"{path}: expected the .h5ad written by {_written_by(step)}.")
        output = _H5ad(path, _written_by(step))
        self._files[step] = output
        self._order[step] = self._alignment(output)

    def _alignment(self, output) -> np.ndarray | None:
        """Rows of ``output`` in the prepared file's order (None: the same order)."""
        names = self.obs_names
        if output.names.equals(names):
            return None
        rows = output.names.get_indexer(names) if output.names.is_unique else np.full(len(names), -1)
        if len(output.names) == len(names) and (rows >= 0).all():
            return rows
        missing = names[rows < 0] if output.names.is_unique else names
        extra = output.names.difference(names)
        example = (list(missing[:1]) or list(extra[:1]) or ["?"])[0]
        raise InputDataError(
            f"{output.path}: its {len(output.names):,} cells are not the {len(names):,} cells of {self.prepared} "
            f"({len(missing):,} of those missing, {len(extra):,} others, e.g. {example!r}); give the prepared "
            "file that step read."
        )

    # -- reading ------------------------------------------------------------------------
    @property
    def obs_names(self) -> pd.Index:
        return self._files["prepared"].names

    @property
    def n_cells(self) -> int:
        return len(self.obs_names)

    def where(self, group: str, key: str) -> str | None:
        """The step whose file holds ``group[key]`` (the last one when several do)."""
        for step in reversed(self._files):
            if key in self._files[step].group(group):
                return step
        return None

    def has(self, group: str, key: str, step: str | None = None) -> bool:
        """Whether any file (or the given step's) holds ``group[key]``."""
        if step is not None:
            return step in self._files and key in self._files[step].group(group)
        return self.where(group, key) is not None

    def path(self, step: str) -> Path | None:
        file = self._files.get(step)
        return file.path if file is not None else None

    def read(self, group: str, key: str):
        """``obs`` column or ``obsm`` array ``key`` from the last file holding it, in the
        prepared file's cell order."""
        step = self.where(group, key)
        if step is None:
            raise KeyError(key)
        return self.read_from(step, group, key)

    def read_from(self, step: str, group: str, key: str):
        """``group[key]`` (per cell: obs, obsm, layers) of one step's file, in the prepared
        file's cell order."""
        values = self._files[step].read(group, key)
        rows = self._order[step]
        if rows is None:
            return values
        return values.iloc[rows] if isinstance(values, pd.DataFrame) else values[rows]

    def steps(self) -> list[str]:
        """The steps whose files are joined, the prepared file first."""
        return list(self._files)

    def element(self, step: str, group: str):
        """A whole top-level element of one step's file (obs DataFrame, obsm/uns/layers dict),
        as stored (not reordered)."""
        file = self._files[step]
        return file.read_all(group) if group in file.group_names() else None

    def uns(self, key: str, step: str | None = None) -> dict:
        """``uns[key]`` from the given step's file, else from the last file holding it ({} if none)."""
        step = step or self.where("uns", key)
        if step is None or step not in self._files or key not in self._files[step].group("uns"):
            return {}
        return self._files[step].read("uns", key)

    def recorded_settings(self) -> dict:
        """What 'pertcontrast preprocess' recorded (perturbation column, control label, ...)."""
        recorded = self.uns(PREPROCESS_KEY, "prepared")
        return recorded.get("settings", {}) if isinstance(recorded, dict) else {}

    def labels_and_control(self, perturbation_key=None, control_label=None) -> tuple[np.ndarray, str, str]:
        """Each cell's perturbation label (str), the control label and the perturbation
        column: as given, else as recorded in the prepared file."""
        key, control = perturbation_column(self.recorded_settings(), perturbation_key, control_label, self.prepared)
        if not self.has("obs", key):
            raise InputDataError(f"{self.prepared}: obs has no column '{key}' (the perturbation column); "
                                 "pass {param} with the right name.", param="perturbation_key")
        values = self.read("obs", key)
        # categoricals through object: a missing label stays missing instead of becoming "nan"
        values = values.astype(object) if isinstance(values, pd.Categorical) else values
        labels = np.asarray(pd.Series(np.asarray(values)).astype(str))
        if not (labels == control).any():
            raise InputDataError(f"{self.prepared}: no cells with the control label '{control}' in '{key}'; "
                                 "pass {param}.", param="control_label")
        return labels, control, key

    def columns(self, group: str = "obs") -> list[str]:
        """Every key of ``group`` over the files, in file order."""
        return list(dict.fromkeys(str(key) for file in self._files.values() for key in file.group(group)))

    # -- as AnnData ---------------------------------------------------------------------
    def anndata(self, obs_keys=(), obsm_keys=()):
        """The prepared AnnData (an .h5ad stays on disk: counts are read by block), with the
        given obs columns and obsm arrays of the step outputs added in memory."""
        from pertcontrast.data.reading import read_anndata

        adata = read_anndata(self.prepared, backed=self.prepared.suffix == ".h5ad")
        for key in obs_keys:
            if self.where("obs", key) not in (None, "prepared"):
                adata.obs[key] = self.read("obs", key)
        for key in obsm_keys:
            if self.where("obsm", key) not in (None, "prepared"):
                adata.obsm[key] = self.read("obsm", key)
        return adata

    def close(self) -> None:
        for file in self._files.values():
            file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
