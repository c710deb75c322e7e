"""tensorflow-datasets fallback, used only when no local files are found.

It needs a network (probed with one TCP connection; `JAXPRUNE_OFFLINE=1` skips it)
and is not exercised by the offline test suite. It tries the TF-free random-access
`tfds.data_source` first, then `tfds.load(..., batch_size=-1)` (which needs TensorFlow).
"""

from __future__ import annotations

import os
import socket

import numpy as np


class TfdsUnavailable(RuntimeError):
    """tensorflow-datasets could not provide the data (offline, not installed, failed)."""


def network_available(host: str = "storage.googleapis.com", port: int = 443,
                      timeout: float = 2.0) -> bool:
    """True if a TCP connection to the tfds download host opens (and not JAXPRUNE_OFFLINE)."""
    if os.environ.get("JAXPRUNE_OFFLINE", "") not in ("", "0"):
        return False
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def load(name: str, splits: tuple[str, ...]) -> list[tuple[np.ndarray, np.ndarray, tuple]]:
    """(uint8 [n, h, w, c] images, int32 [n] labels, class names) for each split."""
    if not network_available():
        raise TfdsUnavailable("no network connection (or JAXPRUNE_OFFLINE is set)")
    try:
        import tensorflow_datasets as tfds
    except Exception as e:  # broken installs raise all sorts
        raise TfdsUnavailable(f"tensorflow-datasets is not importable ({e})") from e
    done: dict[str, tuple] = {}
    for split in splits:
        if split not in done:
            done[split] = _load_split(tfds, name, split)
    return [done[s] for s in splits]


def _load_split(tfds, name: str, split: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    errors = []
    try:
        source = tfds.data_source(name, split=split, download=True)
        examples = [source[i] for i in range(len(source))]
        images = np.stack([np.asarray(ex["image"], dtype=np.uint8) for ex in examples])
        labels = np.array([int(ex["label"]) for ex in examples], dtype=np.int32)
        names = tuple(source.dataset_info.features["label"].names)
        return images, labels, names
    except Exception as e:  # any failure: try the next way
        errors.append(f"data_source: {type(e).__name__}: {e}")
    try:
        ds, info = tfds.load(name, split=split, batch_size=-1, with_info=True)
        arrays = tfds.as_numpy(ds)
        names = tuple(info.features["label"].names)
        return (arrays["image"].astype(np.uint8), arrays["label"].astype(np.int32), names)
    except Exception as e:  # report both failures below
        errors.append(f"load/as_numpy: {type(e).__name__}: {e}")
    raise TfdsUnavailable(f"tfds could not load {name}/{split}: " + "; ".join(errors))
