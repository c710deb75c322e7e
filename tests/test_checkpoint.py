"""Checkpoints: round trips, abstract restores, clear errors, saves that never clobber."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from helpers import assert_trees_equal, numpy_params

import jaxprune
from jaxprune import checkpoint as ckpt
from jaxprune.models import architecture, available, init_params
from jaxprune.train import TrainConfig

CONFIG = {"input_shape": [8, 8, 1], "widths": [4, 6, 16, 8]}
ARCH = architecture("lenet5_mnist", **CONFIG)


def random_params(seed=0, arch=ARCH):
    return numpy_params(arch, seed)


def stacked_params(seeds=(0, 1)):
    per_seed = [random_params(s) for s in seeds]
    return jax.tree.map(lambda *a: np.stack(a), *per_seed)


def masks_for(params):
    masks = {name: np.ones((2, w), np.float32) for name, w in ARCH.widths.items()}
    for m in masks.values():
        m[:, 0] = 0.0
    return masks


def metadata():
    return {
        "seeds": [0, 1],
        "dataset": "digits",
        "network": {"name": "lenet5_mnist", "config": CONFIG},
        "train_config": TrainConfig(seeds=(0, 1)).to_dict(),
    }


def test_round_trip_params_masks_metadata(tmp_path):
    params = stacked_params()
    masks = masks_for(params)
    path = ckpt.save(tmp_path / "ck", params, masks, metadata(), arch=ARCH)
    assert ckpt.is_checkpoint(path)

    plain = ckpt.restore(path)  # no abstract tree: nested dicts
    assert_trees_equal(plain.params, params)
    assert_trees_equal(plain.masks, masks)
    assert plain.state is None

    restored = ckpt.restore(path, ckpt.abstract_tree(params),
                            abstract_masks=ckpt.abstract_tree(masks))
    assert_trees_equal(restored.params, params)
    assert_trees_equal(restored.masks, masks)

    meta = restored.metadata
    assert meta["jaxprune_version"] == jaxprune.__version__
    assert meta["seeds"] == [0, 1] and meta["dataset"] == "digits"
    assert TrainConfig.from_dict(meta["train_config"]) == TrainConfig(seeds=(0, 1))
    assert meta["arrays"]["params"]["conv1/kernel"] == {"shape": [2, 3, 3, 1, 4],
                                                       "dtype": "float32"}
    # the architecture comes back exactly, and from the network name and config as well
    assert restored.architecture == ARCH
    net = meta["network"]
    assert architecture(net["name"], **net["config"]) == ARCH
    assert ckpt.read_metadata(path) == meta
    # without masks
    only = ckpt.restore(ckpt.save(tmp_path / "p", params), ckpt.abstract_tree(params))
    assert only.masks is None and only.architecture is None


def test_state_with_optimizer_named_tuples(tmp_path):
    params = random_params()
    opt = optax.adam(1e-3).init(params)
    state = {"opt_state": opt, "active": jnp.array([True, False]), "epoch": jnp.int32(4)}
    path = ckpt.save(tmp_path / "ck", params, state=state)
    restored = ckpt.restore(path, ckpt.abstract_tree(params),
                            abstract_state=ckpt.abstract_tree(state))
    assert_trees_equal(restored.state, state)
    assert isinstance(restored.state["opt_state"][0], optax.ScaleByAdamState)
    # only the params' abstract given: the state comes back as plain containers
    partial = ckpt.restore(path, ckpt.abstract_tree(params))
    assert_trees_equal(partial.params, params)
    np.testing.assert_array_equal(partial.state["opt_state"][0]["mu"]["fc1"]["kernel"],
                                  opt[0].mu["fc1"]["kernel"])


@pytest.mark.parametrize("name", available())
def test_architecture_dict_round_trip(name):
    arch = architecture(name)
    data = ckpt.arch_to_dict(arch)
    assert json.loads(json.dumps(data)) == data
    assert ckpt.arch_from_dict(data) == arch
    pruned = arch.with_widths({arch.layers[0].name: 3})
    assert ckpt.arch_from_dict(ckpt.arch_to_dict(pruned)) == pruned


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ckpt.CheckpointNotFoundError, match="no checkpoint at .*nothing"):
        ckpt.restore(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError
        ckpt.read_metadata(tmp_path / "nothing")


def _step_dir(path, step=None):
    return path / str(ckpt.steps(path)[0] if step is None else step)


# orbax/tensorstore may finish a failed read's callbacks after its event loop closed
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_truncated_checkpoints(tmp_path):
    params = stacked_params()
    # no metadata file
    path = ckpt.save(tmp_path / "a", params)
    (_step_dir(path) / ckpt.METADATA / ckpt.METADATA).unlink()
    with pytest.raises(ckpt.CheckpointCorruptError, match="metadata is missing"):
        ckpt.restore(path)
    # a truncated metadata file
    path = ckpt.save(tmp_path / "b", params)
    file = _step_dir(path) / ckpt.METADATA / ckpt.METADATA
    file.write_text(file.read_text()[: file.stat().st_size // 2])
    with pytest.raises(ckpt.CheckpointCorruptError, match="truncated or not valid JSON"):
        ckpt.restore(path)
    # truncated array files
    path = ckpt.save(tmp_path / "c", params)
    data_files = [f for f in (_step_dir(path) / ckpt.ARRAYS).rglob("*")
                  if f.is_file() and f.parent.name == "d"]
    assert data_files
    for f in data_files:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ckpt.CheckpointCorruptError, match="could not be read"):
        ckpt.restore(path, ckpt.abstract_tree(params))
    # the array folder is gone
    path = ckpt.save(tmp_path / "d", params)
    shutil.rmtree(_step_dir(path) / ckpt.ARRAYS)
    with pytest.raises(ckpt.CheckpointCorruptError, match="could not be read"):
        ckpt.restore(path)
    # a folder with no committed step
    (tmp_path / "e" / "0.orbax-checkpoint-tmp-1").mkdir(parents=True)
    with pytest.raises(ckpt.CheckpointCorruptError, match="no complete checkpoint"):
        ckpt.restore(tmp_path / "e")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_damaged_newest_step_falls_back_to_the_previous(tmp_path):
    old, new = stacked_params((0, 1)), stacked_params((5, 6))
    path = ckpt.save(tmp_path / "ck", old, metadata={"round": 1}, keep=2)
    ckpt.save(path, new, metadata={"round": 2}, keep=2)
    assert ckpt.steps(path) == [1, 0]
    file = _step_dir(path, 1) / ckpt.METADATA / ckpt.METADATA
    file.write_text("{")
    with pytest.warns(UserWarning, match="restoring the previous step 0"):
        restored = ckpt.restore(path, ckpt.abstract_tree(old))
    assert_trees_equal(restored.params, old)
    assert restored.metadata["round"] == 1
    with pytest.raises(ckpt.CheckpointCorruptError):  # an explicit step does not fall back
        ckpt.restore(path, step=1)


def test_mismatched_abstract_tree(tmp_path):
    params = stacked_params()
    path = ckpt.save(tmp_path / "ck", params, masks_for(params))
    wrong_shape = ckpt.abstract_tree(stacked_params(seeds=(0, 1, 2)))
    with pytest.raises(ckpt.CheckpointMismatchError,
                       match=r"params/conv1/kernel: checkpoint has shape \(2, 3, 3, 1, 4\) "
                             r"float32, expected \(3, 3, 3, 1, 4\) float32"):
        ckpt.restore(path, wrong_shape)
    other = architecture("lenet5_mnist", input_shape=(8, 8, 1), widths=(4, 6, 16, 9))
    with pytest.raises(ckpt.CheckpointMismatchError, match="fc2/kernel"):
        ckpt.restore(path, jax.eval_shape(lambda: init_params(other, jax.random.key(0))))
    missing = ckpt.abstract_tree(params)
    missing["extra"] = {"kernel": jax.ShapeDtypeStruct((2, 3), jnp.float32)}
    with pytest.raises(ckpt.CheckpointMismatchError, match=r"not in the checkpoint: \['extra"):
        ckpt.restore(path, missing)
    as_int = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, jnp.int32),
                          ckpt.abstract_tree(params))
    with pytest.raises(ckpt.CheckpointMismatchError, match="expected .* int32"):
        ckpt.restore(path, as_int)
    with pytest.raises(ckpt.CheckpointMismatchError, match="has no state"):
        ckpt.restore(path, abstract_state={"epoch": jax.ShapeDtypeStruct((), jnp.int32)})


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck"
    old = stacked_params()
    ckpt.save(path, old, metadata={"round": 1})
    new = jax.tree.map(lambda a: a + 1.0, old)

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    for method in ("save", "async_save"):
        monkeypatch.setattr(ocp.JsonCheckpointHandler, method, broken)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save(path, new, metadata={"round": 2})
    monkeypatch.undo()
    restored = ckpt.restore(path, ckpt.abstract_tree(old))
    assert_trees_equal(restored.params, old)
    assert restored.metadata["round"] == 1
    assert ckpt.steps(path) == [0]  # the failed step was never committed
    # metadata that is not JSON fails before anything is written
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        ckpt.save(path, new, metadata={"round": object()})
    with pytest.raises(ValueError, match="reserved"):
        ckpt.save(path, new, metadata={"arrays": 1})
    assert ckpt.restore(path).metadata["round"] == 1
    # a successful save replaces it
    ckpt.save(path, new, metadata={"round": 3})
    assert_trees_equal(ckpt.restore(path, ckpt.abstract_tree(new)).params, new)
    # a folder that is not a checkpoint is never replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ckpt.CheckpointError, match="not a jaxprune checkpoint"):
        ckpt.save(tmp_path / "mine", new)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_uncommitted_step_is_ignored_and_old_steps_are_pruned(tmp_path):
    params = stacked_params()
    path = ckpt.save(tmp_path / "ck", params)
    # what a save killed mid-write leaves: an uncommitted temporary step folder
    (path / "1.orbax-checkpoint-tmp-123").mkdir()
    assert ckpt.steps(path) == [0]
    assert_trees_equal(ckpt.restore(path, ckpt.abstract_tree(params)).params, params)
    newer = jax.tree.map(lambda a: a * 2, params)
    ckpt.save(path, newer, keep=1)
    assert ckpt.steps(path) == [1]
    assert_trees_equal(ckpt.restore(path, ckpt.abstract_tree(params)).params, newer)


def test_format_1_folders_are_still_read(tmp_path):
    params = stacked_params()
    path = ckpt.save(tmp_path / "new", params, metadata={"round": 7})
    legacy = tmp_path / "legacy"
    shutil.copytree(_step_dir(path) / ckpt.ARRAYS, legacy / "arrays")
    meta = ckpt.read_metadata(path)
    (legacy / ckpt.LEGACY_METADATA_FILE).write_text(json.dumps({**meta, "format_version": 1}))
    assert ckpt.is_checkpoint(legacy)
    restored = ckpt.restore(legacy, ckpt.abstract_tree(params))
    assert_trees_equal(restored.params, params)
    assert restored.metadata["round"] == 7
    with pytest.raises(ckpt.CheckpointError, match="format 1"):
        ckpt.save(legacy, params)
