"""torchvision-layout weight import: parity with a plain PyTorch network, and errors."""

import jax
import numpy as np
import pytest

from jaxprune import models, weights

torch = pytest.importorskip("torch", reason="torch==2.13.0 (CPU) is needed for parity tests")
nn = torch.nn


def torch_vgg16(num_classes=1000):
    """VGG-16 in torchvision's module layout, written plainly."""
    layers, c_in = [], 3
    for c in models.zoo.VGG16_CONVS:
        if c == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = c
    net = nn.Module()
    net.features = nn.Sequential(*layers)
    net.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    net.classifier = nn.Sequential(
        nn.Linear(512 * 49, 4096), nn.ReLU(True), nn.Dropout(),
        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, num_classes))
    return net


def torch_alexnet(num_classes=1000):
    net = nn.Module()
    net.features = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(3, 2))
    net.avgpool = nn.AdaptiveAvgPool2d((6, 6))
    net.classifier = nn.Sequential(
        nn.Dropout(), nn.Linear(256 * 36, 4096), nn.ReLU(True),
        nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(True), nn.Linear(4096, num_classes))
    return net


def torch_forward(net, x_nchw):
    with torch.no_grad():
        h = net.avgpool(net.features(x_nchw))
        return net.classifier(torch.flatten(h, 1)).numpy()


@pytest.mark.parametrize("family, builder, size", [
    ("vgg16", torch_vgg16, 224),
    ("alexnet", torch_alexnet, 224),
    ("alexnet", torch_alexnet, 100),  # adaptive pooling from 2x2 up to 6x6
])
def test_forward_parity(tmp_path, family, builder, size):
    torch.manual_seed(0)
    net = builder().eval()
    path = tmp_path / f"{family}.pth"
    torch.save(net.state_dict(), path)
    x = np.random.default_rng(0).normal(size=(2, 3, size, size)).astype(np.float32)
    expected = torch_forward(net, torch.from_numpy(x))

    arch = models.architecture(family, input_shape=(size, size, 3))
    params = weights.load_torchvision(arch, path)
    logits, _ = jax.jit(lambda p, x: models.apply(arch, p, None, x))(
        params, x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(np.asarray(logits), expected, atol=1e-4)


def test_npz_equals_pth(tmp_path):
    torch.manual_seed(1)
    state = {k: v.numpy() for k, v in torch_alexnet().state_dict().items()}
    np.savez(tmp_path / "a.npz", **state)
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "a.pth")
    a = weights.load_torchvision("alexnet", tmp_path / "a.npz")
    b = weights.load_torchvision("alexnet", tmp_path / "a.pth")
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_bad_weight_files_name_every_problem():
    torch.manual_seed(2)
    state = {k: v.numpy() for k, v in torch_alexnet().state_dict().items()}
    del state["features.3.weight"]
    state["features.10.bias"] = np.zeros(7, np.float32)
    state["classifier.9.weight"] = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError) as err:
        weights.from_torchvision("alexnet", state)
    text = str(err.value)
    assert "missing tensor features.3.weight (192, 64, 5, 5)" in text
    assert "unexpected tensor classifier.9.weight (2, 2)" in text
    assert "tensor features.10.bias has shape (7,), expected (256,)" in text


def test_unsupported_family_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no torchvision layout for 'mlp'"):
        weights.from_torchvision("mlp", {})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        weights.load_torchvision("vgg16", tmp_path / "nope.pth")
