"""The fit between a target geometry and a network's readout: what every PoZ search maximises.

A target is either the readout features of the unpruned network (the default) or an external
RSM such as human similarity judgments. ``Fit.__call__(features [n, d], mask) -> scalar`` is
pure and vmappable over candidates; a fixed target's statistics are computed once.

**A removed unit is absent.** ``mask`` is the readout's unit mask: Pearson and Spearman RSMs
are computed over the kept units only (row means, norms and ranks from the kept units), so the
fit of a masked network equals the fit of its compacted network (:func:`jaxprune.masks.compact`)
— never that of a network with zero columns. Cosine and Euclidean RSMs do not change under
zero columns and need no special case.

**Class means.** With ``average [C, n]`` (:func:`class_average`), the features of each class
are averaged before the RSM (a C×C RSM): the target and every candidate alike. The average is
linear, so it commutes with removing units and stays one matmul under ``vmap``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import geometry
from jaxprune.geometry.similarity import RSM_METHODS, feature_mask

METRICS = ("r2", "r", "spearman")


@dataclass(frozen=True)
class Fit:
    """``fit(y, mask)`` = metric between the target RSM and ``rsm(y[:, kept], rsm_method)``.

    ``metric``: ``"r2"`` (squared Pearson r of the upper triangles; the default), ``"r"``
    (Pearson r) or ``"spearman"``. With the Pearson RSM and a Pearson metric the fit is
    computed from d×d Gram matrices (``geometry.gram_rsa``) when ``n`` is large relative to
    ``d``, otherwise from the n×n matrices; both are exact. ``average``: ``[C, n]`` class-mean
    matrix applied to the features first, or None.
    """

    metric: str
    rsm_method: str
    target_rsm: jax.Array | None
    target_stats: geometry.GramStats | None
    average: jax.Array | None = None

    def __call__(self, features: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """Fit of readout ``features [n, ...]`` (flattened HWC) with readout unit ``mask [c]``
        (None: every unit kept)."""
        features = features.reshape(features.shape[0], -1)
        if self.average is not None:
            features = jnp.einsum("cn,nd->cd", self.average.astype(features.dtype), features,
                                  precision=jax.lax.Precision.HIGHEST)
        fmask = feature_mask(None if mask is None else mask.astype(features.dtype),
                             features.shape[-1])
        if self.target_stats is not None:
            z = geometry.standardize_rows(features, fmask)
            r = geometry.gram_rsa(self.target_stats, z)
        else:
            method = "spearman" if self.metric == "spearman" else "pearson"
            r = geometry.rsa(self.target_rsm,
                             geometry.rsm(features, method=self.rsm_method, mask=fmask),
                             method=method)
        return r * r if self.metric == "r2" else r


def class_average(labels: np.ndarray | jax.Array, num_classes: int | None = None) -> np.ndarray:
    """``[C, n]`` matrix ``A`` with ``A @ x`` = the mean feature row of each class (float32).

    ``labels [n]``: integer classes in ``[0, C)``, ``C = num_classes`` or ``max(labels) + 1``.
    Every class needs a stimulus and there must be at least 3 classes (an RSM needs 3 rows);
    otherwise ``ValueError``."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array; got {labels.dtype} "
                         f"of shape {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be non-negative; got {int(labels.min())}")
    classes = int(num_classes if num_classes is not None else labels.max(initial=-1) + 1)
    if labels.size and labels.max() >= classes:
        raise ValueError(f"label {int(labels.max())} is outside [0, {classes})")
    counts = np.bincount(labels, minlength=classes)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(f"class means: classes {empty.tolist()} have no stimulus; "
                         "choose stimuli that cover every class")
    if classes < 3:
        raise ValueError(f"class means need at least 3 classes for an RSM; got {classes}")
    onehot = (labels[None, :] == np.arange(classes)[:, None]).astype(np.float32)
    return onehot / counts[:, None].astype(np.float32)


def check_labels(labels: np.ndarray | jax.Array | None, n: int) -> np.ndarray:
    """``labels`` for ``n`` stimuli (``ValueError`` when missing or of another length)."""
    if labels is None:
        raise ValueError("class means need labels: pass labels=[n] with the stimuli's classes")
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels have shape {labels.shape}, but there are {n} stimuli")
    return labels


def make_fit(
    target_features: jax.Array | None = None,
    target_rsm: jax.Array | np.ndarray | None = None,
    *,
    metric: str = "r2",
    rsm_method: str = "pearson",
    path: str = "auto",
    average: jax.Array | np.ndarray | None = None,
) -> Fit:
    """A :class:`Fit` against readout features ``[n, d]`` (their RSM is the target, every unit
    kept) or an external ``[m, m]`` RSM (``m = n``, or ``C`` with ``average [C, n]``).
    ``path``: ``"auto"``, ``"gram"`` or ``"direct"``."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {METRICS}")
    if rsm_method not in RSM_METHODS:
        raise ValueError(f"unknown rsm_method {rsm_method!r}; choose from {RSM_METHODS}")
    if (target_features is None) == (target_rsm is None):
        raise ValueError("give exactly one of target_features and target_rsm")
    if average is not None:
        average = jnp.asarray(average, jnp.float32)
    if target_rsm is not None:
        target_rsm = jnp.asarray(target_rsm, jnp.float32)
        m = target_rsm.shape[0]
        if target_rsm.ndim != 2 or target_rsm.shape != (m, m):
            raise ValueError(f"target RSM must be square [n, n], got {target_rsm.shape}")
        return Fit(metric, rsm_method, target_rsm, None, average)
    x = jnp.asarray(target_features, jnp.float32)
    x = x.reshape(x.shape[0], -1)
    if average is not None:
        x = jnp.einsum("cn,nd->cd", average, x, precision=jax.lax.Precision.HIGHEST)
    n, d = x.shape
    gram = metric != "spearman" and rsm_method == "pearson" and (
        path == "gram" or (path == "auto" and n > 1.5 * d))
    if gram:
        stats = geometry.gram_stats(geometry.standardize_rows(x))
        return Fit(metric, rsm_method, None, stats, average)
    return Fit(metric, rsm_method, geometry.rsm(x, method=rsm_method), None, average)


jax.tree_util.register_dataclass(
    Fit, data_fields=["target_rsm", "target_stats", "average"],
    meta_fields=["metric", "rsm_method"]
)
