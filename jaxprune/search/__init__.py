"""Pruning searches: PoZ (geometry-preserving), greedy CKA, and baselines, all returning
:class:`PruneResult`."""

from jaxprune.search._common import DIRECTIONS
from jaxprune.search.baselines import (
    METHODS,
    incoming_l1,
    l1_prune,
    poz_prune,
    prune_units,
    random_prune,
)
from jaxprune.search.circuits import (
    CircuitConfig,
    Circuits,
    circuit_jaccard,
    circuit_scores,
    effective_masks,
    evaluate_circuits,
    extract_circuits,
)
from jaxprune.search.cka import (
    CKAConfig,
    candidate_cka,
    cka_prune,
    cka_prune_layer,
    cka_prune_sequential,
    layerwise_cka,
)
from jaxprune.search.curves import FractionCurve, fraction_curve
from jaxprune.search.fit import Fit, make_fit
from jaxprune.search.iterative import (
    IterativeConfig,
    IterativeResult,
    Splits,
    iterative_prune,
)
from jaxprune.search.poz import (
    PoZConfig,
    poz_order,
    poz_search,
    poz_search_directions,
    poz_search_sequential,
)
from jaxprune.search.redundant import (
    Redundancy,
    explained_by_removed,
    layer_features,
    redundancy,
    removable_count,
    removal_fits,
    resample_epsilon,
    ridge_oof,
)
from jaxprune.search.result import LayerTrace, PruneResult, to_jsonable, write_json

__all__ = [
    "DIRECTIONS",
    "CKAConfig",
    "CircuitConfig",
    "Circuits",
    "METHODS",
    "Fit",
    "FractionCurve",
    "IterativeConfig",
    "IterativeResult",
    "LayerTrace",
    "PoZConfig",
    "PruneResult",
    "Redundancy",
    "Splits",
    "candidate_cka",
    "circuit_jaccard",
    "circuit_scores",
    "cka_prune",
    "cka_prune_layer",
    "cka_prune_sequential",
    "effective_masks",
    "evaluate_circuits",
    "explained_by_removed",
    "extract_circuits",
    "fraction_curve",
    "incoming_l1",
    "iterative_prune",
    "l1_prune",
    "layer_features",
    "layerwise_cka",
    "make_fit",
    "poz_order",
    "poz_prune",
    "poz_search",
    "poz_search_directions",
    "poz_search_sequential",
    "prune_units",
    "random_prune",
    "redundancy",
    "removable_count",
    "removal_fits",
    "resample_epsilon",
    "ridge_oof",
    "to_jsonable",
    "write_json",
]
