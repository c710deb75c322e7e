"""tensorflow-datasets as a data source (`load_dataset(..., source="tfds")`).

Reads through the TF-free random-access `tfds.data_source` (array_record files under
`$TFDS_DATA_DIR`, default `~/tensorflow_datasets`). A split prepared earlier is read without a
network; otherwise the data are downloaded and prepared once, which the MNIST and CIFAR-10
builders do through TensorFlow (`tf.io.gfile`): that needs the extra `jaxprune[tfds]`
(tensorflow-cpu and importlib_resources). Downloads are attempted only when a TCP connection
to the download host opens (`JAXPRUNE_OFFLINE=1` skips the probe and the download).
"""

from __future__ import annotations

import importlib.util
import os
import socket

import numpy as np

INSTALL_HINT = "pip install 'jaxprune[tfds]'"

#: Modules that preparing MNIST/CIFAR-10 with tensorflow-datasets needs besides tfds itself.
PREPARE_MODULES = ("tensorflow", "importlib_resources")


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


def missing_modules() -> list[str]:
    """The modules of `PREPARE_MODULES` (and tensorflow_datasets) that are not installed."""
    names = ("tensorflow_datasets", *PREPARE_MODULES)
    return [n for n in names if importlib.util.find_spec(n) is None]


def import_tfds():
    """The `tensorflow_datasets` module, or TfdsUnavailable naming the install command."""
    try:
        import tensorflow_datasets as tfds
    except Exception as e:  # broken installs raise all sorts
        raise TfdsUnavailable(f"tensorflow-datasets is not importable ({type(e).__name__}: "
                              f"{e}); install it with {INSTALL_HINT}") from e
    return tfds


def load(name: str, splits: tuple[str, ...], *, offline_ok: bool = True,
         ) -> list[tuple[np.ndarray, np.ndarray, tuple]]:
    """(uint8 [n, h, w, c] images, int32 [n] labels, class names) for each split.

    offline_ok=False (the "auto" fallback) gives up at once when no network is reachable,
    before importing tensorflow-datasets; otherwise prepared splits are read offline.
    """
    if not offline_ok and not network_available():
        raise TfdsUnavailable("no network connection (or JAXPRUNE_OFFLINE is set)")
    tfds = import_tfds()
    done: dict[str, tuple] = {}
    for split in splits:
        if split not in done:
            done[split] = _to_arrays(_open_split(tfds, name, split))
    return [done[s] for s in splits]


def _open_split(tfds, name: str, split: str):
    """The data source of a prepared split, downloading and preparing it when needed."""
    # $TFDS_DATA_DIR read now, not at tfds' import; array_record: the format data_source reads
    where = {"data_dir": os.environ.get("TFDS_DATA_DIR") or None,
             "builder_kwargs": {"file_format": "array_record"}}
    try:
        return tfds.data_source(name, split=split, download=False, **where)
    except Exception as e:  # not prepared yet (or unreadable): prepare below
        first = f"{type(e).__name__}: {e}"
    missing = missing_modules()
    if missing:
        raise TfdsUnavailable(f"{name}/{split} is not prepared in the tensorflow-datasets folder "
                              f"({first}) and preparing it needs {', '.join(missing)}, which "
                              f"is not installed; install it with {INSTALL_HINT}")
    if not network_available():
        raise TfdsUnavailable(f"{name}/{split} is not prepared in the tensorflow-datasets folder "
                              "and there is no network connection (or JAXPRUNE_OFFLINE is "
                              "set) to download it")
    try:
        return tfds.data_source(name, split=split, download=True, **where)
    except ImportError as e:
        raise TfdsUnavailable(f"preparing {name}/{split} needs the module {e.name!r} "
                              f"({e}); install it with {INSTALL_HINT}") from e
    except Exception as e:  # download or preparation failed
        raise TfdsUnavailable(f"tfds could not download/prepare {name}/{split}: "
                              f"{type(e).__name__}: {e}") from e


def _to_arrays(source) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """All examples of a tfds data source as (images, labels, class names)."""
    n = len(source)
    if n == 0:
        raise TfdsUnavailable("tensorflow-datasets returned an empty split")
    try:  # one batched read; tfds.testing.mock_data's sources lack a working one
        examples = source.__getitems__(list(range(n)))
    except (AttributeError, TypeError):
        examples = [source[i] for i in range(n)]
    images = np.stack([np.asarray(ex["image"], dtype=np.uint8) for ex in examples])
    labels = np.array([int(ex["label"]) for ex in examples], dtype=np.int32)
    names = tuple(source.dataset_info.features["label"].names)
    return images, labels, names
