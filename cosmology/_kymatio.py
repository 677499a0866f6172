"""kymatio's 2D scattering transform, importable with current SciPy.

kymatio 0.3.0 imports ``scipy.special.sph_harm`` (for its 3D transform) when any of its
frontends is imported; SciPy 1.17 removed that function in favour of ``sph_harm_y``. This
module, and only this module, restores the old name before importing kymatio. The two
differ in argument order and in which angle is which:

- ``sph_harm(m, n, theta, phi)``: order ``m``, degree ``n``, ``theta`` the azimuthal and
  ``phi`` the polar angle;
- ``sph_harm_y(n, m, theta, phi)``: degree ``n``, order ``m``, ``theta`` the polar and
  ``phi`` the azimuthal angle.

So ``sph_harm(m, n, az, pol) == sph_harm_y(n, m, pol, az)``. The 2D scattering used here
never calls it. Where SciPy still has ``sph_harm`` nothing is changed.

Examples
--------
>>> import torch
>>> s = Scattering2D(J=2, shape=(16, 16), L=4)
>>> tuple(s(torch.zeros(1, 16, 16)).shape)
(1, 25, 4, 4)
"""

from __future__ import annotations

import scipy.special

__all__ = ["Scattering2D", "sph_harm"]


def sph_harm(m, n, theta, phi):
    """The removed ``scipy.special.sph_harm`` (azimuth ``theta``, polar angle ``phi``).

    Examples
    --------
    >>> import numpy as np
    >>> v = sph_harm(0, 0, 0.3, 1.1)  # Y_0^0 = 1 / (2 sqrt(pi)) everywhere
    >>> bool(np.isclose(v, 0.5 / np.sqrt(np.pi)))
    True
    """
    return scipy.special.sph_harm_y(n, m, phi, theta)


if not hasattr(scipy.special, "sph_harm"):
    scipy.special.sph_harm = sph_harm

from kymatio.torch import Scattering2D  # noqa: E402
