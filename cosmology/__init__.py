"""Weak-lensing convergence maps -> (Omega_m, sigma_8)."""
