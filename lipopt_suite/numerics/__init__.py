"""Certified float64 building blocks, below every method.

Rounding (`rounding`), power iterations and certified spectral norms of dense matrices
(`spectral`), shifted-Cholesky proofs of positive definiteness and Gram-matrix bounds
(`psd`), interval and LP bounds over boxes and largest balls in polytopes (`polytope`), and
the LipSDP matrix with its multiplier certificate (`lmi`). Modules here import only the
network, bound and error types; methods in `core/` and `solvers/` import them.
"""
