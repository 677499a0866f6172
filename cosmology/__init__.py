"""Weak-lensing convergence maps -> (Omega_m, sigma_8).

FITS maps and the MassiveNuS file tree (:mod:`cosmology.io`), the cosmologies, designs and
pyccl spectra (:mod:`cosmology.cosmologies`), shape noise and smoothing
(:mod:`cosmology.noise`), catalogs and a lazy torch dataset (:mod:`cosmology.data`), a
shifted-lognormal simulator (:mod:`cosmology.simulate`) and batched map statistics
(:mod:`cosmology.statistics`).
"""

from cosmology.io import read_map, write_map

__all__ = ["load_catalog", "read_map", "write_map"]


def __getattr__(name: str):
    # The catalog loaders pull in torch and pandas; import them only when asked for.
    if name == "load_catalog":
        from cosmology.data import load_catalog

        return load_catalog
    raise AttributeError(f"module 'cosmology' has no attribute {name!r}")
