"""Cross-validated selection of readout units against a human RSM: PoZ pruning (the level
chosen on training images) and the supervised baseline of Tarigopula et al. (units ranked by
how much removing each alone lowers the training fit; the best top-k kept).

Protocol: ``repeats`` random assignments of the n images to ``folds`` folds
(``default_rng([seed, repeat])``). In each fold the training images' sub-RSM (pairs of
training images) chooses the selection, and the test images' sub-RSM (pairs of test images)
scores it against the unpruned readout; a paired one-sided t-test over all folds asks whether
the selection fits the held-out pairs better (H₁: mean(pruned − unpruned) > 0).
Every fold's training and test fits come from one scan over the full n×n RSM restricted to
the fold's pairs (a stimulus's RSM row depends on its own features only), folds batched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from jaxprune import geometry
from jaxprune.align.engine import (
    Target,
    leave_one_out_fits,
    make_target,
    prefix_fits,
    removal_fits,
    stack_targets,
)

MIN_PER_FOLD = 5

#: ``(train, test)`` index arrays of every fold.
Splits = list[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class CVConfig:
    """``folds`` × ``repeats`` fold assignments of the images, drawn from ``seed``."""

    folds: int = 5
    repeats: int = 8
    seed: int = 0


def check_folds(n: int, config: CVConfig) -> None:
    """``ValueError`` unless every fold holds at least 5 test images (n // folds ≥ 5)."""
    if config.folds < 2 or config.repeats < 1:
        raise ValueError(f"need at least 2 folds and 1 repeat, got {config.folds} folds, "
                         f"{config.repeats} repeats")
    if n // config.folds < MIN_PER_FOLD:
        raise ValueError(f"{n} images in {config.folds} folds leave {n // config.folds} per "
                         f"fold; at least {MIN_PER_FOLD} are needed (use fewer folds or "
                         f"at least {MIN_PER_FOLD * config.folds} images)")


def fold_splits(n: int, config: CVConfig) -> Splits:
    """``(train, test)`` sorted index arrays of every fold, repeat by repeat."""
    check_folds(n, config)
    out = []
    for rep in range(config.repeats):
        perm = np.random.default_rng([config.seed, rep]).permutation(n)
        for test in np.array_split(perm, config.folds):
            out.append((np.setdiff1d(np.arange(n), test), np.sort(test)))
    return out


def fold_targets(human: np.ndarray, splits: Splits) -> Target:
    """``[F, 2]`` targets: the training pairs and the test pairs of every fold."""
    return stack_targets([stack_targets([make_target(human, tr), make_target(human, te)])
                          for tr, te in splits])


def fold_curves(features: np.ndarray, human: np.ndarray, splits: Splits, orders: np.ndarray,
                *, removal: bool, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``(train [F, d], test [F, d])`` curves of every fold for per-fold ``orders [F, d]``:
    removal fits (entry r: the first r units of the order removed) or prefix fits (entry
    k−1: the first k units kept). One batched call per ``batch`` folds, all levels at once."""
    fn = removal_fits if removal else prefix_fits
    out = fn(features, fold_targets(human, splits), orders, batch)
    return out[:, 0], out[:, 1]


def fold_leave_one_out(features: np.ndarray, human: np.ndarray, splits: Splits,
                       batch: int = 32) -> np.ndarray:
    """``[F, d]``: training fit of each fold with each unit alone removed."""
    train = stack_targets([make_target(human, tr) for tr, _ in splits])
    return leave_one_out_fits(features, train, batch)


def poz_orders(features: np.ndarray, splits: Splits) -> np.ndarray:
    """``[F, d]`` removal orders: decreasing PoZ over each fold's training images (stable)."""
    x = np.asarray(features, np.float32)
    return np.stack([np.argsort(-np.asarray(geometry.poz(x[tr], conv=False)), kind="stable")
                     for tr, _ in splits])


@dataclass
class Selection:
    """Per fold (F = folds × repeats): fits of the unpruned and the selected readout on the
    training and the test pairs, and the units kept."""

    method: str
    train_fit_unpruned: list[float]
    train_fit_selected: list[float]
    test_fit_unpruned: list[float]
    test_fit_pruned: list[float]
    units_kept: list[int]

    def summary(self) -> dict:
        """Mean and sample sd (ddof=1) over folds, and the paired one-sided t-test."""
        t, p = paired_test(self.test_fit_pruned, self.test_fit_unpruned)
        ms = lambda v: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1))}  # noqa: E731
        return {"method": self.method, "folds": len(self.units_kept),
                "test_fit_unpruned": ms(self.test_fit_unpruned),
                "test_fit_pruned": ms(self.test_fit_pruned),
                "train_fit_unpruned": ms(self.train_fit_unpruned),
                "train_fit_selected": ms(self.train_fit_selected),
                "t": t, "p": p, "units_kept": ms(self.units_kept),
                "per_fold": {k: getattr(self, k) for k in (
                    "train_fit_unpruned", "train_fit_selected", "test_fit_unpruned",
                    "test_fit_pruned", "units_kept")}}


def paired_test(pruned, unpruned) -> tuple[float | None, float | None]:
    """``(t, p)`` of the paired one-sided t-test H₁: mean(pruned − unpruned) > 0 (``None`` for
    both when every difference is equal, e.g. all zero: the test is undefined)."""
    diff = np.asarray(pruned, np.float64) - np.asarray(unpruned, np.float64)
    if diff.size < 2 or np.ptp(diff) == 0.0:
        return None, None
    res = stats.ttest_rel(pruned, unpruned, alternative="greater")
    return float(res.statistic), float(res.pvalue)


def poz_selection(features: np.ndarray, human: np.ndarray,
                  config: CVConfig = CVConfig()) -> Selection:
    """PoZ pruning with the level ``r* = argmax_r fit_train(r)`` (units removed in decreasing
    PoZ of the training images; first maximum), scored on the test pairs."""
    splits = fold_splits(len(features), config)
    train, test = fold_curves(features, human, splits, poz_orders(features, splits),
                              removal=True)
    best = np.argmax(train, axis=1)
    f = np.arange(len(splits))
    return Selection("poz", train[:, 0].tolist(), train[f, best].tolist(), test[:, 0].tolist(),
                     test[f, best].tolist(), (train.shape[1] - best).tolist())


def supervised_orders(features: np.ndarray, human: np.ndarray, splits: Splits) -> np.ndarray:
    """``[F, d]`` units by decreasing ``fit_train(all) − fit_train(all ∖ u)`` (= increasing
    leave-one-out fit; stable)."""
    return np.argsort(fold_leave_one_out(features, human, splits), axis=1, kind="stable")


def supervised_selection(features: np.ndarray, human: np.ndarray,
                         config: CVConfig = CVConfig()) -> Selection:
    """Tarigopula et al.'s supervised selection: keep the top ``k* = argmax_k fit_train(top k)``
    units of :func:`supervised_orders`, scored on the test pairs."""
    splits = fold_splits(len(features), config)
    orders = supervised_orders(features, human, splits)
    train, test = fold_curves(features, human, splits, orders, removal=False)
    best = np.argmax(train, axis=1)
    f = np.arange(len(splits))
    return Selection("supervised", train[:, -1].tolist(), train[f, best].tolist(),
                     test[:, -1].tolist(), test[f, best].tolist(), (best + 1).tolist())
