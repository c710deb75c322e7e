"""What every benchmark records about the machine it ran on, and /proc readings it shares:
the helpers of :mod:`jaxprune.bench` (``jaxprune bench`` records the same).

Imported by the scripts in this folder (``python benchmarks/NAME.py`` puts the folder on
``sys.path``)."""

from jaxprune.bench import finish, machine_info, peak_rss_mib, proc_field, reset_peak_rss

__all__ = ["finish", "machine_info", "peak_rss_mib", "proc_field", "reset_peak_rss"]
