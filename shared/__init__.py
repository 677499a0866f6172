"""The domain-free core of adaptive wavelet distillation (AWD).

Examples
--------
>>> import torch
>>> from shared import DWT1d
>>> coeffs = DWT1d("db5", levels=4, mode="zero")(torch.randn(8, 1, 40))
>>> len(coeffs)
5
"""

from shared.transform import DWT1d, DWT2d
from shared.wavelet import LearnableWavelet

__all__ = ["DWT1d", "DWT2d", "LearnableWavelet"]
