"""Alignment of readouts to human similarity judgments (design method 3).

- :mod:`~jaxprune.align.engine`: fits of every nested unit subset in one scan (kept units only).
- :mod:`~jaxprune.align.curve`: the PoZ removal curve at every level with a random control.
- :mod:`~jaxprune.align.selection`: cross-validated PoZ selection and the supervised baseline.
- :mod:`~jaxprune.align.job`: loading and checking inputs, network features, the
  whole-network search against a human target, ``jaxprune align``.
"""

from jaxprune.align.curve import AlignmentCurve, alignment_curve, poz_removal_order
from jaxprune.align.engine import leave_one_out_fits, make_target, prefix_fits, removal_fits
from jaxprune.align.job import (
    AlignConfig,
    AlignInputs,
    HumanTarget,
    align_command,
    align_embedding,
    load_human,
    noise_ceiling,
    readout_features,
    whole_network_search,
)
from jaxprune.align.selection import (
    CVConfig,
    Selection,
    fold_splits,
    paired_test,
    poz_selection,
    supervised_selection,
)

__all__ = [
    "AlignConfig",
    "AlignInputs",
    "AlignmentCurve",
    "CVConfig",
    "HumanTarget",
    "Selection",
    "align_command",
    "align_embedding",
    "alignment_curve",
    "fold_splits",
    "leave_one_out_fits",
    "load_human",
    "make_target",
    "noise_ceiling",
    "paired_test",
    "poz_removal_order",
    "poz_selection",
    "prefix_fits",
    "readout_features",
    "removal_fits",
    "supervised_selection",
    "whole_network_search",
]
