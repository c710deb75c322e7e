"""Networks: shapes, parameter counts, purity, seed stacking, registry errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import models

EXPECTED = {
    # name: (parameters, input shape, {layer: activation shape without the batch axis})
    "lenet5_cifar": (62_006, (32, 32, 3), {"conv1": (28, 28, 6), "conv2": (10, 10, 16),
                                           "fc1": (120,), "fc2": (84,)}),
    "lenet5_mnist": (3_317_450, (28, 28, 1), {"conv1": (28, 28, 64), "conv2": (28, 28, 64),
                                              "fc1": (256,), "fc2": (256,)}),
    "mlp": (669_706, (784,), {"fc1": (512,), "fc2": (512,)}),
    "vgg16": (138_357_544, (224, 224, 3), None),
    "alexnet": (61_100_840, (224, 224, 3), {"conv1": (55, 55, 64), "conv2": (27, 27, 192),
                                            "conv3": (13, 13, 384), "conv4": (13, 13, 256),
                                            "conv5": (13, 13, 256), "fc1": (4096,),
                                            "fc2": (4096,)}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_count_and_shapes(name):
    count, in_shape, act_shapes = EXPECTED[name]
    arch = models.architecture(name)
    params = jax.eval_shape(lambda: models.init_params(arch, jax.random.key(0)))
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) == count
    x = jax.ShapeDtypeStruct((2, *in_shape), jnp.float32)
    logits, acts = jax.eval_shape(lambda p, x: models.apply(arch, p, None, x), params, x)
    assert logits.shape == (2, arch.num_classes)
    assert list(acts) == list(arch.layer_names) or sorted(acts) == sorted(arch.layer_names)
    for layer in arch.layers:
        assert acts[layer.name].shape[-1] == layer.width
        if act_shapes is not None:
            assert acts[layer.name].shape[1:] == act_shapes[layer.name]
    assert arch.readout_layer == arch.layers[-1].name


def test_vgg16_layout():
    arch = models.architecture("vgg16")
    assert [layer.kind for layer in arch.layers] == ["conv"] * 13 + ["dense"] * 2
    assert [layer.width for layer in arch.layers][:13] == [64, 64, 128, 128, 256, 256, 256,
                                                           512, 512, 512, 512, 512, 512]
    assert sum(layer.pool is not None for layer in arch.layers) == 5


def test_nnx_module_matches_pure_apply():
    model = models.get("lenet5_cifar", seed=3)
    x = jax.random.normal(jax.random.key(0), (5, 32, 32, 3))
    apply_fn, params = models.functional(model)
    logits, acts = model(x)
    logits2, acts2 = jax.jit(apply_fn)(params, None, x)
    np.testing.assert_allclose(logits, logits2, atol=1e-6)
    # nnx.split gives the same parameters as the plain dict
    _, state = models.nnx_split(model)
    leaves = jax.tree.leaves(state)
    assert len(leaves) == len(jax.tree.leaves(params))


def test_masks_zero_units_after_relu():
    arch = models.architecture("lenet5_cifar")
    params = models.init_params(arch, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (3, 32, 32, 3))
    mask = jnp.ones(16).at[jnp.array([0, 5])].set(0.0)
    _, acts = models.apply(arch, params, {"conv2": mask}, x)
    assert float(jnp.abs(acts["conv2"][..., 0]).max()) == 0.0
    assert float(jnp.abs(acts["conv2"][..., 5]).max()) == 0.0
    assert float(acts["conv2"][..., 1].max()) > 0.0
    assert float(jnp.min(acts["fc1"])) >= 0.0


def test_stacked_seeds_vmap_equals_single():
    arch = models.architecture("mlp", input_dim=64, widths=(32, 16))
    stack = models.init_stack(arch, [0, 7, 11])
    x = jax.random.normal(jax.random.key(2), (4, 64))
    stacked_logits, stacked_acts = jax.vmap(lambda p: models.apply(arch, p, None, x))(stack)
    for i, seed in enumerate([0, 7, 11]):
        single = models.init_params(arch, jax.random.key(seed))
        for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(stack), strict=True):
            np.testing.assert_array_equal(a, b[i])
        logits, _ = models.apply(arch, single, None, x)
        np.testing.assert_allclose(logits, stacked_logits[i], atol=1e-6)
    assert stacked_acts["fc2"].shape == (3, 4, 16)


def test_dropout_only_in_training():
    arch = models.architecture("mlp", input_dim=20, widths=(64, 64), dropout=0.5)
    params = models.init_params(arch, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (8, 20))
    eval1, _ = models.apply(arch, params, None, x)
    eval2, _ = models.apply(arch, params, None, x, train=False, key=jax.random.key(3))
    train1, _ = models.apply(arch, params, None, x, train=True, key=jax.random.key(3))
    train2, _ = models.apply(arch, params, None, x, train=True, key=jax.random.key(4))
    np.testing.assert_array_equal(eval1, eval2)
    assert not np.allclose(train1, train2)
    with pytest.raises(ValueError, match="random key"):
        models.apply(arch, params, None, x, train=True)


def test_vector_network_accepts_images():
    arch = models.architecture("mlp", input_dim=64, widths=(8,))
    params = models.init_params(arch, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    a, _ = models.apply(arch, params, None, x)
    b, _ = models.apply(arch, params, None, x.reshape(2, 64))
    np.testing.assert_array_equal(a, b)


def test_unknown_network_lists_available():
    with pytest.raises(ValueError, match="available: alexnet, efficientnet_lite0, lenet5_cifar, "
                                         "lenet5_mnist, mlp, resnet18, resnet50, vgg16"):
        models.get("resnet34")


def test_unknown_layer_lists_layers():
    arch = models.architecture("lenet5_cifar")
    with pytest.raises(ValueError, match=r"no layer 'fc9'.*conv1"):
        arch.index("fc9")
    with pytest.raises(ValueError, match="fc9"):
        arch.with_widths({"fc9": 3})


def test_adaptive_pool_matches_torch_bins():
    from jaxprune.models.network import _adaptive_avg_pool

    a = jnp.arange(5 * 5, dtype=jnp.float32).reshape(1, 5, 5, 1)
    out = _adaptive_avg_pool(a, (3, 3))
    # torch bins for 5 -> 3: [0, 2), [1, 4), [3, 5)
    ref = np.arange(25, dtype=np.float32).reshape(5, 5)
    bins = [(0, 2), (1, 4), (3, 5)]
    expected = np.array([[ref[r0:r1, c0:c1].mean() for c0, c1 in bins] for r0, r1 in bins])
    np.testing.assert_allclose(out[0, :, :, 0], expected, rtol=1e-6)
