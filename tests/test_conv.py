"""conv2d (custom CPU batching rule) against its slow twin, the plain XLA convolution, under
every combination of vmap and grad the library uses; max_pool2d against reduce_window;
jaxprune's CPU training flag against XLA's default lowering."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune
from jaxprune import CPU_CONV_FLAG
from jaxprune.models.conv import conv2d, max_pool2d, xla_conv2d, xla_max_pool2d

REPO = Path(__file__).resolve().parents[1]

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


def _pool_input(shape, key=5):
    """Post-ReLU-like activations with exact ties: zeros, and a constant positive block (as a
    conv over MNIST's uniform background gives) where every window's maximum repeats."""
    a = jax.nn.relu(jax.random.normal(jax.random.key(key), shape))
    return a.at[..., :4, :4, :].set(0.5)


@pytest.mark.parametrize("window,stride,padding", [(2, 2, 0), (3, 3, 0), (3, 2, 0), (3, 2, 1)])
@pytest.mark.parametrize("shape", [(N, 9, 10, 3), (S, N, 8, 8, 2)])
def test_max_pool_value_and_grad_match_reduce_window(window, stride, padding, shape):
    """Values equal; the gradient goes to each window's first maximum, ties included,
    exactly as reduce_window's; odd sizes drop the rows no window fills."""
    a = _pool_input(shape)
    cotangent = jax.random.normal(jax.random.key(6), xla_max_pool2d(a, window, stride,
                                                                    padding).shape)

    def value_and_grad(pool):
        out, vjp = jax.vjp(lambda x: pool(x, window, stride, padding), a)
        return out, vjp(cotangent)[0]

    for fast, slow in zip(jax.jit(lambda: value_and_grad(max_pool2d))(),
                          jax.jit(lambda: value_and_grad(xla_max_pool2d))(), strict=True):
        np.testing.assert_array_equal(np.asarray(fast), np.asarray(slow))


def test_vmapped_max_pool_grad_matches_reduce_window():
    a = _pool_input((S, N, 12, 12, 4))

    def grads(pool):
        loss = lambda x: jnp.sum(jnp.sin(pool(x, 2, 2)))  # noqa: E731
        return jax.jit(jax.vmap(jax.grad(loss)))(a)

    np.testing.assert_array_equal(np.asarray(grads(max_pool2d)),
                                  np.asarray(grads(xla_max_pool2d)))


def test_max_pool_grad_in_float64():
    with jax.enable_x64(True):  # argmax is int64 there
        a = _pool_input((N, 8, 8, 2)).astype(jnp.float64)
        grads = [jax.grad(lambda x, pool=pool: jnp.sum(jnp.sin(pool(x, 2, 2))))(a)
                 for pool in (max_pool2d, xla_max_pool2d)]
    assert grads[0].dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(grads[0]), np.asarray(grads[1]))


GRADIENT_PROBE = """
import sys
import numpy as np
import jaxprune
if sys.argv[2] == "fast":
    assert jaxprune.add_cpu_conv_flag()
import jax, jax.numpy as jnp
from jaxprune.models.conv import conv2d
kx, kk = jax.random.split(jax.random.key(0))
x = jax.random.normal(kx, (3, 16, 14, 14, 16))
kernel = jax.random.normal(kk, (3, 3, 3, 16, 32)) / 12.0
loss = lambda x, k: jnp.sum(jnp.tanh(conv2d(x, k, 1, 1)) ** 2)
grads = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(x, kernel)
np.savez(sys.argv[1], x=np.asarray(grads[0]), kernel=np.asarray(grads[1]))
"""

ON_MEASURED_PLATFORM = platform.system() == "Linux" and platform.machine() == "x86_64"


def _probe_gradients(tmp_path, name: str) -> dict:
    out = tmp_path / f"{name}.npz"
    environ = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    subprocess.run([sys.executable, "-c", GRADIENT_PROBE, str(out), name], env=environ,
                   cwd=REPO, check=True, timeout=300)
    return dict(np.load(out))


@pytest.mark.skipif(not ON_MEASURED_PLATFORM, reason="the CPU flag is added on Linux x86-64 only")
def test_cpu_conv_flag_matches_xla_default(tmp_path):
    """The fast CPU training path (jaxprune.CPU_CONV_FLAG) against its slow twin, XLA's
    default lowering: the same stacked input and kernel gradients to float32 rounding."""
    fast = _probe_gradients(tmp_path, "fast")
    slow = _probe_gradients(tmp_path, "slow")
    for name in ("x", "kernel"):
        scale = np.abs(slow[name]).max()
        np.testing.assert_allclose(fast[name], slow[name], rtol=1e-4, atol=1e-5 * scale)


def test_cpu_conv_flag_is_added_only_where_measured(monkeypatch):
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(jaxprune, "_jax_backends_started", lambda: False)
    assert jaxprune.add_cpu_conv_flag(env)
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=8 {CPU_CONV_FLAG}"
    assert not jaxprune.add_cpu_conv_flag(env)  # already there: not added twice
    user = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="}
    assert not jaxprune.add_cpu_conv_flag(user)  # the user's own setting (here: off) wins
    assert user["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type="
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    assert not jaxprune.add_cpu_conv_flag({})


def test_cpu_conv_flag_is_not_added_once_jax_has_started():
    jnp.ones(1).block_until_ready()  # backends exist: a flag set now would do nothing
    env = {}
    assert not jaxprune.add_cpu_conv_flag(env) and "XLA_FLAGS" not in env
