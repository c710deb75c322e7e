"""Plain PyTorch implementations, written from the published architectures, that the
backbone tests compare jaxprune's JAX networks against (only torch.nn / functional)."""

import math

import torch
import torch.nn.functional as F
from torch import nn

# EfficientNet-Lite0: the stride of each of the 16 MBConv blocks (kernels come from the file)
LITE0_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1)


def _tf_same(x, k, s):
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / s) - 1) * s + k - h, 0)
    pw = max((math.ceil(w / s) - 1) * s + k - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


def _conv_bn(sd, x, conv, bn, stride=1, depthwise=False, act=True):
    w = sd[conv]
    x = F.conv2d(_tf_same(x, w.shape[-1], stride), w, stride=stride,
                 groups=w.shape[0] if depthwise else 1)
    x = F.batch_norm(x, sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"], sd[f"{bn}.weight"],
                     sd[f"{bn}.bias"], training=False, eps=1e-3)
    return F.relu6(x) if act else x


def efficientnet_lite0(sd, x):
    """Logits of EfficientNet-Lite0 from its state dict; x: NCHW, already (pixel - 127) / 128."""
    x = _conv_bn(sd, x, "_conv_stem.weight", "_bn0", 2)
    for b, s in enumerate(LITE0_STRIDES):
        p = f"_blocks.{b}."
        h = x
        if p + "_expand_conv.weight" in sd:
            h = _conv_bn(sd, h, p + "_expand_conv.weight", p + "_bn0")
        h = _conv_bn(sd, h, p + "_depthwise_conv.weight", p + "_bn1", s, depthwise=True)
        h = _conv_bn(sd, h, p + "_project_conv.weight", p + "_bn2", act=False)
        x = x + h if s == 1 and h.shape == x.shape else h
    x = _conv_bn(sd, x, "_conv_head.weight", "_bn1")
    return F.linear(x.mean((2, 3)), sd["_fc.weight"], sd["_fc.bias"])


class Basic(nn.Module):
    expansion = 1

    def __init__(self, c_in, mid, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)

    def main(self, x):
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in, mid, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, 4 * mid, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * mid)

    def main(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return self.bn3(self.conv3(F.relu(self.bn2(self.conv2(h)))))


def _block(kind, c_in, mid, stride):
    block = kind(c_in, mid, stride)
    c_out = mid * kind.expansion
    if stride != 1 or c_in != c_out:
        block.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                         nn.BatchNorm2d(c_out))
    return block


class ResNet(nn.Module):
    """torchvision's ResNet layout (module names, so its state_dict keys), eval mode."""

    def __init__(self, depths, bottleneck, widths=(64, 128, 256, 512), classes=1000):
        super().__init__()
        kind = Bottleneck if bottleneck else Basic
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        c_in = widths[0]
        for stage, (depth, mid) in enumerate(zip(depths, widths, strict=True)):
            blocks = []
            for i in range(depth):
                blocks.append(_block(kind, c_in, mid, 2 if stage and not i else 1))
                c_in = mid * kind.expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.stages = len(depths)
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for stage in range(self.stages):
            for block in getattr(self, f"layer{stage + 1}"):
                short = block.downsample(x) if hasattr(block, "downsample") else x
                x = F.relu(block.main(x) + short)
        return self.fc(x.mean((2, 3)))


def randomise_batch_norm(model, seed=0):
    """Non-trivial running statistics and affine parameters in every BatchNorm2d."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            m.running_var.copy_(0.5 + torch.rand(c, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(c, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(c, generator=g))
    return model.eval()
