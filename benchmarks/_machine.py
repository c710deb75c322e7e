"""What every benchmark records about the machine it ran on, and /proc readings it shares:
the helpers of :mod:`jaxprune.bench` (``jaxprune bench`` records the same).

Imported by the scripts in this folder (``python benchmarks/NAME.py`` puts the folder on
``sys.path``)."""

from jaxprune.bench import finish, machine_info, peak_rss_mib, proc_field, reset_peak_rss

__all__ = ["UserError", "finish", "machine_info", "peak_rss_mib", "proc_field", "reset_peak_rss",
           "run_main"]


class UserError(Exception):
    """A bad option: printed as ``error: ...``, exit status 2."""


def run_main(main) -> None:
    """``main()`` as a script's entry point: a :class:`UserError` becomes ``error: ...`` on
    stderr and exit status 2, without a traceback."""
    import sys

    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
