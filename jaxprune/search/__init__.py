"""Pruning searches: PoZ (geometry-preserving), greedy CKA, and baselines."""

from jaxprune.search.result import LayerTrace, PruneResult, to_jsonable, write_json

__all__ = ["LayerTrace", "PruneResult", "to_jsonable", "write_json"]
