"""The domain-free core of adaptive wavelet distillation (AWD)."""
