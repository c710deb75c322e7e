"""conv2d (custom CPU batching rule) against its slow twin, the plain XLA convolution, under
every combination of vmap and grad the library uses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune.models.conv import conv2d, xla_conv2d

S, N = 3, 4


def _inputs(key=0, stride=1):
    kx, kk = jax.random.split(jax.random.key(key))
    x = jax.random.normal(kx, (S, N, 9, 9, 2))
    kernel = jax.random.normal(kk, (S, 3, 3, 2, 5)) / 3.0
    return x, kernel


def _loss(conv, stride, padding):
    return lambda x, k: jnp.sum(jnp.tanh(conv(x, k, stride, padding)) ** 2)


def _close(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), (1, 2)])
def test_unbatched_value_and_grad(stride, padding):
    x, k = _inputs()
    fast = jax.jit(jax.value_and_grad(_loss(conv2d, stride, padding), argnums=(0, 1)))
    slow = jax.jit(jax.value_and_grad(_loss(xla_conv2d, stride, padding), argnums=(0, 1)))
    _close(fast(x[0], k[0]), slow(x[0], k[0]))


@pytest.mark.parametrize("in_axes", [(0, 0), (0, None), (None, 0)])
def test_vmapped_grad_matches_plain_conv(in_axes):
    """Stacked seeds (both batched), shared kernel (inputs batched), shared inputs."""
    x, k = _inputs(1)
    xs = x if in_axes[0] == 0 else x[0]
    ks = k if in_axes[1] == 0 else k[0]
    fast = jax.jit(jax.vmap(jax.value_and_grad(_loss(conv2d, 2, 1), argnums=(0, 1)), in_axes))
    slow = jax.jit(jax.vmap(jax.value_and_grad(_loss(xla_conv2d, 2, 1), argnums=(0, 1)),
                            in_axes))
    _close(fast(xs, ks), slow(xs, ks))


def test_nested_vmap_seeds_by_candidates():
    """The search's shape: seeds (kernel batched) outside, candidate inputs inside."""
    x, k = _inputs(2)
    cand = jnp.stack([x, 2.0 * x])  # [candidates, S, N, ...]

    def run(conv):
        per_seed = jax.vmap(lambda xc, kk: conv(xc, kk, 1, 1), in_axes=(0, None))
        return jax.jit(jax.vmap(per_seed, in_axes=(1, 0)))(cand, k)

    _close(run(conv2d), run(xla_conv2d))


def test_vmapped_grad_has_no_grouped_convolution():
    if jax.default_backend() != "cpu":
        pytest.skip("the batching rule is only used on CPU")
    x, k = _inputs()
    grad = jax.vmap(jax.grad(_loss(conv2d, 1, 0), argnums=(0, 1)))
    text = jax.jit(grad).lower(x, k).as_text()
    assert "feature_group_count = 1" in text or "feature_group_count" not in text
    assert "feature_group_count = 3" not in text
    plain = jax.jit(jax.vmap(jax.grad(_loss(xla_conv2d, 1, 0), argnums=(0, 1))))
    assert "feature_group_count = 3" in plain.lower(x, k).as_text()
