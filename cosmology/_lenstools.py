"""The one place that imports lenstools.

lenstools 1.2 (its last release) predates NumPy 2 and Python 3.12: it uses the removed
aliases ``np.complex``/``np.float``/``np.int`` and does ``from distutils import config``,
which setuptools' bundled distutils lacks. Both are patched here, once, before the import,
so no other module has to know.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["convergence_map", "lenstools"]

_MODULE: ModuleType | None = None


def _install_shims() -> None:
    # Only the three aliases lenstools needs; np.bool/np.object would break numpy.ma.
    for name, value in (("complex", complex), ("float", float), ("int", int)):
        if not hasattr(np, name):
            setattr(np, name, value)
    # lenstools imports distutils.config, which exists only in the stdlib distutils
    # (Python <= 3.11); setuptools' shim replaces it unless told otherwise.
    if "distutils.config" not in sys.modules:
        os.environ["SETUPTOOLS_USE_DISTUTILS"] = "stdlib"
        try:
            import _distutils_hack  # type: ignore[import-not-found]

            _distutils_hack.remove_shim()
        except ImportError:
            pass
        for name in [m for m in sys.modules if m == "distutils" or m.startswith("distutils.")]:
            del sys.modules[name]


def lenstools() -> ModuleType:
    """Import lenstools with the compatibility shims and return the module.

    Returns
    -------
    module
        The imported ``lenstools`` package.

    Raises
    ------
    ImportError
        If lenstools is not installed.

    Examples
    --------
    >>> lt = lenstools()
    >>> hasattr(lt, "ConvergenceMap")
    True
    """
    global _MODULE
    if _MODULE is None:
        _install_shims()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*mpi4py.*")
            warnings.filterwarnings("ignore", message=".*pkg_resources.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=SyntaxWarning)
            _MODULE = importlib.import_module("lenstools")
    return _MODULE


def convergence_map(kappa: np.ndarray, side_angle_deg: float) -> Any:
    """Wrap a 2D array as a ``lenstools.ConvergenceMap`` (float64, side angle in degrees).

    Examples
    --------
    >>> m = convergence_map(np.zeros((8, 8)), 3.5)
    >>> float(m.side_angle.value)
    3.5
    """
    import astropy.units as u

    lt = lenstools()
    return lt.ConvergenceMap(np.asarray(kappa, dtype=np.float64), float(side_angle_deg) * u.deg)
