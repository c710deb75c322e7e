"""The fit between a target geometry and a network's readout: what every PoZ search maximises.

A target is either the readout features of the unpruned network (the default) or an external
RSM such as human similarity judgments. ``Fit.__call__(features [n, d]) -> scalar`` is pure and
vmappable over candidates; a fixed target's statistics are computed once.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import geometry

METRICS = ("r2", "r", "spearman")
RSM_METHODS = ("pearson", "pearson_sq", "spearman", "cosine", "euclidean")


@dataclass(frozen=True)
class Fit:
    """``fit(y)`` = metric between the target RSM and ``rsm(y, rsm_method)``.

    ``metric``: ``"r2"`` (squared Pearson r of the upper triangles; the default), ``"r"``
    (Pearson r) or ``"spearman"``. With the Pearson RSM and a Pearson metric the fit is
    computed from d×d Gram matrices (``geometry.gram_rsa``) when ``n`` is large relative to
    ``d``, otherwise from the n×n matrices; both are exact.
    """

    metric: str
    rsm_method: str
    target_rsm: jax.Array | None
    target_stats: geometry.GramStats | None

    def __call__(self, features: jax.Array) -> jax.Array:
        features = features.reshape(features.shape[0], -1)
        if self.target_stats is not None:
            r = geometry.gram_rsa(self.target_stats, geometry.standardize_rows(features))
        else:
            method = "spearman" if self.metric == "spearman" else "pearson"
            r = geometry.rsa(self.target_rsm, geometry.rsm(features, method=self.rsm_method),
                             method=method)
        return r * r if self.metric == "r2" else r


def make_fit(
    target_features: jax.Array | None = None,
    target_rsm: jax.Array | np.ndarray | None = None,
    *,
    metric: str = "r2",
    rsm_method: str = "pearson",
    path: str = "auto",
) -> Fit:
    """A :class:`Fit` against readout features ``[n, d]`` (their RSM is the target) or an
    external ``[n, n]`` RSM. ``path``: ``"auto"``, ``"gram"`` or ``"direct"``."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {METRICS}")
    if rsm_method not in RSM_METHODS:
        raise ValueError(f"unknown rsm_method {rsm_method!r}; choose from {RSM_METHODS}")
    if (target_features is None) == (target_rsm is None):
        raise ValueError("give exactly one of target_features and target_rsm")
    if target_rsm is not None:
        target_rsm = jnp.asarray(target_rsm, jnp.float32)
        n = target_rsm.shape[0]
        if target_rsm.ndim != 2 or target_rsm.shape != (n, n):
            raise ValueError(f"target RSM must be square [n, n], got {target_rsm.shape}")
        return Fit(metric, rsm_method, target_rsm, None)
    x = jnp.asarray(target_features, jnp.float32)
    x = x.reshape(x.shape[0], -1)
    n, d = x.shape
    gram = metric != "spearman" and rsm_method == "pearson" and (
        path == "gram" or (path == "auto" and n > 1.5 * d))
    if gram:
        return Fit(metric, rsm_method, None, geometry.gram_stats(geometry.standardize_rows(x)))
    return Fit(metric, rsm_method, geometry.rsm(x, method=rsm_method), None)


jax.tree_util.register_dataclass(
    Fit, data_fields=["target_rsm", "target_stats"], meta_fields=["metric", "rsm_method"]
)
