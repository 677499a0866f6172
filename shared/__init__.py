"""The domain-free core of adaptive wavelet distillation (AWD).

Examples
--------
>>> import torch
>>> from shared import DWT1d
>>> coeffs = DWT1d("db5", levels=4, mode="zero")(torch.randn(8, 1, 40))
>>> len(coeffs)
5
"""

from shared.distill import AWDTransformer, DistillConfig, distill
from shared.losses import AWDLoss, PenaltyWeights
from shared.runs import load_transform, save_transform
from shared.transform import DWT1d, DWT2d
from shared.wavelet import LearnableWavelet

__all__ = [
    "AWDLoss",
    "AWDTransformer",
    "DWT1d",
    "DWT2d",
    "DistillConfig",
    "LearnableWavelet",
    "PenaltyWeights",
    "distill",
    "load_transform",
    "save_transform",
]
