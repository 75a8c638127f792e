"""Certified float64 building blocks.

Numerical pieces whose answers are proven in floating point (rounding-aware Cholesky
certificates of positive definiteness, the LipSDP matrix inequality and its a-posteriori
certificate, closed-form feasible points) and that methods in `core/` and `solvers/` share.
This package imports only `lipopt_suite.network`, `bound` and `errors` (and numpy, scipy,
torch), never `core/` or `solvers/`, so that both layers can build on it.
"""
