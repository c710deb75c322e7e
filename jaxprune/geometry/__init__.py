"""Representational geometry: PoZ, RSMs, RSA fits, feature-space RSA, CKA.

Every function takes ``[..., n, d]`` features (n stimuli, d features) or ``[..., n, n]`` RSMs,
maps over leading batch axes, is jit-able and vmappable, and computes in float32 unless given
float64 with x64 enabled (ints, bools and half floats are cast to float32).

Defined everywhere:

- A **constant row** (a stimulus whose features are all equal, e.g. all zero after pruning) has
  no Pearson correlation. Its standardized row is zero, so its Pearson RSM entries with every
  stimulus — its diagonal entry included — are 0 (other diagonal entries are 1). The direct
  n×n path and the feature-space (Gram) path use this same definition.
- A fit whose one side is constant is **0**: an RSM whose strict upper triangle is constant
  up to ``128·eps`` relative error (:func:`constant_triangle`), a CKA side with zero
  (debiased: non-positive) self-HSIC.
- Eager (non-traced) calls warn with :class:`ConstantRowWarning` / :class:`UndefinedFitWarning`
  (both :class:`GeometryWarning`, a ``RuntimeWarning``) and say how many. Under ``jit``/``vmap``
  no Python warning is possible: use :func:`count_constant_rows` and :func:`constant_triangle`.
- ``ValueError`` for: unknown method names, bad shapes, different n on the two sides, fewer than
  3 stimuli (4 for debiased CKA), and — in eager calls only — NaN or Inf values (under
  ``jit`` a NaN input propagates to a NaN output; it is never silently replaced).

Modules: ``sparsity`` (PoZ), ``similarity`` (RSMs), ``comparison`` (RSA fits), ``gram``
(feature-space RSA), ``alignment`` (CKA, HSIC, minibatch CKA).
"""

from jaxprune.geometry._core import (
    ConstantRowWarning,
    GeometryWarning,
    UndefinedFitWarning,
    center,
    safe_divide,
    use_feature_space,
)
from jaxprune.geometry.alignment import MinibatchCKA, cka, hsic, minibatch_cka
from jaxprune.geometry.comparison import constant_triangle, r2, rsa, upper_triangle
from jaxprune.geometry.gram import GramStats, feature_rsa, gram_rsa, gram_stats
from jaxprune.geometry.similarity import condition_means, count_constant_rows, rsm, standardize_rows
from jaxprune.geometry.sparsity import poz

__all__ = [
    "ConstantRowWarning",
    "GeometryWarning",
    "GramStats",
    "MinibatchCKA",
    "UndefinedFitWarning",
    "center",
    "cka",
    "condition_means",
    "constant_triangle",
    "count_constant_rows",
    "feature_rsa",
    "gram_rsa",
    "gram_stats",
    "hsic",
    "minibatch_cka",
    "poz",
    "r2",
    "rsa",
    "rsm",
    "safe_divide",
    "standardize_rows",
    "upper_triangle",
    "use_feature_space",
]
