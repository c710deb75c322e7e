"""The tensorflow-datasets source, offline: `tfds.testing.mock_data` stands in for the download.

mock_data serves random examples through the TF-free `tfds.data_source`, so these tests need
neither TensorFlow nor a network (the network probe is replaced where it is reached)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from jaxprune import cli
from jaxprune.data import DataNotFoundError, _tfds, load_dataset
from jaxprune.data.datasets import set_default_source

tfds = pytest.importorskip("tensorflow_datasets")


@pytest.fixture
def tfds_dir(tmp_path, monkeypatch):
    """An empty tfds data folder and no local files; the probe must not be reached."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setattr(_tfds, "network_available", lambda *a, **k: pytest.fail("probed"))
    return tmp_path / "no_local_files"


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_source_reads_mocked_data(tfds_dir, name, shape):
    with tfds.testing.mock_data(num_examples=12):
        ds = load_dataset(name, "test", data_dir=tfds_dir, source="tfds")
    assert ds.images.shape == (12, *shape) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (12,) and ds.labels.dtype == np.int32
    assert set(ds.labels.tolist()) <= set(range(10)) and len(ds.class_names) == 10
    assert ds.source == f"tfds:{name}/test" and ds.name == f"{name}/test"
    assert len(ds.mean) == shape[-1] and all(s > 0 for s in ds.std)


def test_auto_falls_back_to_tfds_when_online(tfds_dir, monkeypatch):
    monkeypatch.setattr(_tfds, "network_available", lambda *a, **k: True)
    with tfds.testing.mock_data(num_examples=5):
        ds = load_dataset("mnist", "train", data_dir=tfds_dir)
    assert ds.source == "tfds:mnist/train" and len(ds) == 5


def test_local_source_never_tries_tfds(tfds_dir):
    with tfds.testing.mock_data(num_examples=5), pytest.raises(DataNotFoundError,
                                                                 match="source 'local'"):
        load_dataset("mnist", "test", data_dir=tfds_dir, source="local")


def test_cli_data_source_reaches_load_dataset(tfds_dir):
    args = cli.build_parser().parse_args(
        ["curve", "--checkpoint", "c", "--layer", "fc1", "--data-source", "tfds",
         "--no-compile-cache"])
    try:
        cli._setup(args)
        with tfds.testing.mock_data(num_examples=4):
            ds = load_dataset("mnist", "test", data_dir=tfds_dir)
    finally:
        set_default_source(None)
    assert ds.source == "tfds:mnist/test"


def test_missing_extra_names_the_install_command(tfds_dir, monkeypatch, capsys):
    """Nothing prepared and a module for preparing missing: exit 2, `error:` naming the extra."""
    monkeypatch.setattr(_tfds, "PREPARE_MODULES", ("jaxprune_no_such_module",))
    with pytest.raises(DataNotFoundError, match=r"pip install 'jaxprune\[tfds\]'"):
        load_dataset("mnist", "test", data_dir=tfds_dir, source="tfds")
    code = cli.main(["train", "--model", "mlp", "--data", "mnist", "--data-dir", str(tfds_dir),
                     "--data-source", "tfds", "--out", str(tfds_dir.parent / "out"),
                     "--no-compile-cache", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "error: mnist/" in err and "jaxprune_no_such_module" in err
    assert "pip install 'jaxprune[tfds]'" in err and "Traceback" not in err
    set_default_source(None)


def test_tfds_not_importable(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(_tfds.TfdsUnavailable, match=r"jaxprune\[tfds\]"):
        _tfds.import_tfds()


def test_bad_source_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="'web'; use one of auto, local, tfds"):
        load_dataset("mnist", source="web")
    monkeypatch.setenv("JAXPRUNE_DATA_SOURCE", "nope")
    with pytest.raises(ValueError, match=r"\$JAXPRUNE_DATA_SOURCE is 'nope'"):
        load_dataset("mnist")


def _idx(a: np.ndarray) -> bytes:
    """An IDX file (big-endian dims after a uint8 type code) of a uint8 array."""
    head = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return head + a.tobytes()


def test_real_preparation_with_tensorflow(tfds_dir, tmp_path, monkeypatch):
    """With jaxprune[tfds] installed: tfds' own MNIST builder prepares a (tiny, local) download
    through TensorFlow, then the prepared split is read again without any network."""
    for module in _tfds.PREPARE_MODULES:
        pytest.importorskip(module, reason=f"needs {_tfds.INSTALL_HINT} ({module}; about 1.5 GB "
                            "installed, so CI does not install it)")
    from tensorflow_datasets.image_classification import mnist

    rng = np.random.default_rng(0)
    raw, n = tmp_path / "raw", {"train": 20, "t10k": 10}
    raw.mkdir()
    for prefix, count in n.items():
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            _idx(rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            _idx(rng.integers(0, 10, count, dtype=np.uint8)))
    monkeypatch.setattr(mnist, "_TRAIN_EXAMPLES", n["train"])
    monkeypatch.setattr(mnist, "_TEST_EXAMPLES", n["t10k"])
    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract",
                        lambda self, urls: {k: str(raw / u.rsplit("/", 1)[1][:-3])
                                            for k, u in urls.items()})
    monkeypatch.setattr(_tfds, "network_available", lambda *a, **k: True)
    ds = load_dataset("mnist", "test", data_dir=tfds_dir, source="tfds")
    images = np.frombuffer((raw / "t10k-images-idx3-ubyte").read_bytes()[16:], np.uint8)
    assert ds.images.shape == (10, 28, 28, 1) and ds.source == "tfds:mnist/test"
    as_set = sorted(map(bytes, ds.images.reshape(10, -1)))  # tfds stores them shuffled
    assert as_set == sorted(map(bytes, images.reshape(10, -1)))
    monkeypatch.setattr(_tfds, "network_available", lambda *a, **k: pytest.fail("probed"))
    again = load_dataset("mnist", "test", data_dir=tfds_dir, source="tfds")
    assert np.array_equal(again.images, ds.images) and np.array_equal(again.labels, ds.labels)
