"""Backbones: feature widths, the small-image stem, timm models, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crlbench.backbones import build_backbone
from crlbench.errors import UserError


@pytest.mark.parametrize(("name", "dim"), [("resnet18", 512), ("resnet34", 512),
                                           ("resnet50", 2048)])
def test_resnets_small_stem_for_small_images(name, dim):
    net, width = build_backbone(name, channels=3, image_size=32)
    assert width == dim
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity)
    net.eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 32, 32)).shape == (2, dim)


def test_resnet_standard_stem_above_64px_and_grayscale_input():
    net, _ = build_backbone("resnet18", channels=1, image_size=96)
    assert net.conv1.kernel_size == (7, 7) and net.conv1.stride == (2, 2)
    assert net.conv1.in_channels == 1
    assert isinstance(net.maxpool, nn.MaxPool2d)
    small, _ = build_backbone("resnet18", channels=1, image_size=96, small_stem=True)
    assert small.conv1.kernel_size == (3, 3)


def test_tiny_convnet():
    net, dim = build_backbone("convnet_tiny", channels=1, image_size=8, width=8)
    assert dim == 32
    assert net(torch.zeros(3, 1, 8, 8)).shape == (3, 32)


def test_timm_model_by_name_without_weights():
    net, dim = build_backbone("timm:resnet10t", channels=3, image_size=32)
    net.eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 32, 32)).shape == (2, dim)


def test_unknown_backbones():
    with pytest.raises(UserError, match="unknown backbone 'vgg'; valid backbones: resnet18, "
                                        "resnet34, resnet50, convnet_tiny, convnet_4x4, "
                                        "timm:<model name>"):
        build_backbone("vgg", channels=3, image_size=32)
    with pytest.raises(UserError, match="did you mean"):
        build_backbone("timm:resnet1", channels=3, image_size=32)
