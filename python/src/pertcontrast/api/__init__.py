"""The Python API: :class:`ContrastiveModel` (also ``pertcontrast.ContrastiveModel``)."""

from pertcontrast.api.model import ContrastiveModel

__all__ = ["ContrastiveModel"]
