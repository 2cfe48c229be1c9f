"""Backbones: the encoders every method shares, returning one feature vector per image.

- resnet18 / resnet34 / resnet50 from torchvision, randomly initialised, with the small-image
  stem (3x3 stride-1 conv, no max-pool) used by SimCLR's CIFAR experiments for images up to
  64 px, and the standard 7x7 stride-2 stem above that.
- `timm:<model>`: any timm model by name, without pretrained weights.
- convnet_tiny: a four-layer ConvNet for CPU tests and the quickstart.
- convnet_4x4: the encoder of the CMC loss study (Wang, Zhang, Chen, Ding, "Effect of
  Contrastive Loss on Unsupervised Representation Learning", Fig. 3): four 4x4 convolutions of
  stride 2 and padding 1 (12, 24, 48, 24 channels), each followed by a ReLU, flattened; at the
  study's 64 px the output is [24, 4, 4], 384 features.
"""

from __future__ import annotations

import difflib

from torch import nn
from torchvision import models

from crlbench.errors import UserError

RESNETS = {"resnet18": models.resnet18, "resnet34": models.resnet34, "resnet50": models.resnet50}
BUILTIN = (*RESNETS, "convnet_tiny", "convnet_4x4")
SMALL_STEM_MAX_SIZE = 64


def backbone_choices() -> str:
    return ", ".join((*BUILTIN, "timm:<model name>"))


def check_backbone_name(name: str) -> None:
    """Raise UserError unless `name` is a backbone we can build (timm names are looked up)."""
    if name in BUILTIN:
        return
    if name.startswith("timm:"):
        _check_timm_name(name.removeprefix("timm:"))
        return
    raise UserError(f"unknown backbone {name!r}; valid backbones: {backbone_choices()}")


def _check_timm_name(model: str) -> None:
    import timm

    known = timm.list_models()
    if model not in known:
        close = difflib.get_close_matches(model, known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"unknown timm model {model!r}{hint}; see timm.list_models()")


class TinyConvNet(nn.Sequential):
    """Four 3x3 conv-BN-ReLU layers (two with stride 2) and global average pooling."""

    def __init__(self, channels: int, width: int = 32):
        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True)]

        super().__init__(
            *block(channels, width, 1),
            *block(width, 2 * width, 2),
            *block(2 * width, 4 * width, 2),
            *block(4 * width, 4 * width, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.num_features = 4 * width


def check_image_size(name: str, image_size: int) -> None:
    """Raise UserError when backbone `name` cannot take images of this side (checked before a
    suite runs, once the datasets' sizes are known)."""
    if name == "convnet_4x4" and image_size % 16:
        raise UserError(f"backbone convnet_4x4 halves the image side four times and needs a "
                        f"side that is a multiple of 16, got {image_size}; set data.image_size")


class ConvNet4x4(nn.Sequential):
    """The CMC loss study's encoder (its Fig. 3): Conv2d(4, stride 2, padding 1)-ReLU with 12,
    24, 48 and 24 channels, flattened. Each layer halves the side, so the side must be a
    multiple of 16; there is no normalisation layer (the figure has none)."""

    WIDTHS = (12, 24, 48, 24)

    def __init__(self, channels: int, image_size: int):
        check_image_size("convnet_4x4", image_size)
        layers: list[nn.Module] = []
        cin = channels
        for cout in self.WIDTHS:
            layers += [nn.Conv2d(cin, cout, kernel_size=4, stride=2, padding=1),
                       nn.ReLU(inplace=True)]
            cin = cout
        super().__init__(*layers, nn.Flatten())
        self.num_features = self.WIDTHS[-1] * (image_size // 16) ** 2


def _resnet(name: str, channels: int, small_stem: bool) -> tuple[nn.Module, int]:
    net = RESNETS[name](weights=None)
    if small_stem:
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif channels != 3:
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, dim


def build_backbone(
    name: str, *, channels: int, image_size: int, small_stem: bool | None = None, width: int = 32
) -> tuple[nn.Module, int]:
    """Build a randomly initialised backbone; return it and its feature dimension."""
    check_backbone_name(name)
    if small_stem is None:
        small_stem = image_size <= SMALL_STEM_MAX_SIZE
    if name in RESNETS:
        return _resnet(name, channels, small_stem)
    if name == "convnet_tiny":
        net = TinyConvNet(channels, width)
        return net, net.num_features
    if name == "convnet_4x4":
        net = ConvNet4x4(channels, image_size)
        return net, net.num_features
    import timm

    net = timm.create_model(name.removeprefix("timm:"), pretrained=False, num_classes=0,
                            in_chans=channels)
    return net, int(net.num_features)  # timm's pooled feature width when num_classes=0
