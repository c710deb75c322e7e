"""Several processes (hosts) sharing one sweep, with JAX's own ``jax.distributed``.

Each process owns a contiguous share of the seeds (:func:`jaxprune.sharding.seed_share` of its
process index), runs it on its local devices (``--shard`` lays it over them) and writes its
own results file, named for its process (:func:`process_path`); ``jaxprune report`` merges the
files. No collective is needed, so a failed host costs its share only, and the same files come
from a job array without ``jax.distributed`` (``--seeds-slice I/N``).
"""

from __future__ import annotations

from pathlib import Path


def check_options(coordinator: str | None, num_processes: int | None,
                  process_id: int | None, from_environment: bool = False) -> None:
    """Refuse an incomplete or contradictory set of ``--coordinator``, ``--num-processes``,
    ``--process-id`` and ``--distributed`` (``ValueError`` naming what to give)."""
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if any(given) and from_environment:
        raise ValueError("--distributed reads the cluster's environment; do not also give "
                         "--coordinator/--num-processes/--process-id")
    if any(given) and not all(given):
        raise ValueError("give --coordinator HOST:PORT, --num-processes N and --process-id I "
                         "together (or --distributed to read them from the cluster)")
    if all(given):
        if ":" not in coordinator:
            raise ValueError(f"--coordinator {coordinator!r}: expected HOST:PORT")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"--process-id {process_id}: need 0 <= id < --num-processes "
                             f"({num_processes})")


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, from_environment: bool = False) -> bool:
    """``jax.distributed.initialize`` with the given coordinator (or, ``from_environment``,
    with what the cluster's variables say: SLURM, Open MPI, ...); False when neither asks for
    it. Call before any other JAX work."""
    check_options(coordinator, num_processes, process_id, from_environment)
    if coordinator is None and not from_environment:
        return False
    import jax

    try:
        if from_environment:
            jax.distributed.initialize()
        else:
            jax.distributed.initialize(coordinator_address=coordinator,
                                       num_processes=num_processes, process_id=process_id)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"jax.distributed.initialize failed: {e}") from None
    return True


def process_share() -> tuple[int, int] | None:
    """``(process index, process count)`` when several processes run, else None."""
    import jax

    count = jax.process_count()
    return None if count == 1 else (jax.process_index(), count)


def process_path(path: str | Path, share: tuple[int, int] | None) -> Path:
    """``path`` for process ``share = (i, n)``: ``results.json`` -> ``results.process0-of-2.json``
    (unchanged for one process)."""
    path = Path(path)
    if share is None:
        return path
    i, n = share
    return path.with_name(f"{path.stem}.process{i}-of-{n}{path.suffix}")
