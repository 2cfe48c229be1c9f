"""Pinned ImageNet subsets: a class list (WNIDs) and the image counts each split must have,
read from a standard ImageNet tree, so that "ImageNet-10" means the same images for everyone.

Each definition ships its WNID list as package data (crlbench/data/wnids/, one WNID a line, in
the order of the list's source) with the list's sha256, and the counts its source gives:

| name | classes | list from | train | val (test split) |
| --- | --- | --- | --- | --- |
| imagenet10 | 10 | Contrastive Clustering (Li et al. 2021; DAC's list) | 13,000 | 500 |
| imagenet_dogs | 15 | Contrastive Clustering (DAC's list) | 19,500 | 750 |
| imagenet100_cmc | 100 | CMC (Tian et al. 2020), the list solo-learn ships | 126,689 | 5,000 |
| imagenet50_scan | 50 | SCAN (Van Gansbeke et al. 2020) | not pinned | 2,500 |
| imagenet100_scan | 100 | SCAN | not pinned | 5,000 |
| imagenet200_scan | 200 | SCAN | not pinned | 10,000 |
| tiny_imagenet | 200 | Tiny-ImageNet's wnids.txt | 100,000 | 10,000 |

The two ImageNet-100 lists are different benchmarks (they share 12 classes), hence two names.
Where a source pins no train total, every class must hold between 732 and 1,300 images, the
range of ILSVRC-2012's train classes.

Layouts under `data.root`:
- ImageNet subsets: `imagenet/train/<wnid>/*.JPEG` and `imagenet/val/<wnid>/*.JPEG` (the
  validation images sorted into class folders, as torchvision's ImageNet and most training
  scripts expect). The tree may hold all 1,000 classes; a subset reads only its own.
- Tiny-ImageNet: `tiny-imagenet-200/train/<wnid>/images/*.JPEG`, `val/images/*.JPEG` with
  the labels in `val/val_annotations.txt` (the release's own layout). Its unlabelled test
  split is not read.

`check` (run by the preflight before any run) lists the tree and refuses a missing class or a
wrong count in one line; it decodes nothing. `load` decodes the images of both splits into
memory at a fixed side S: the shorter side resized to S and the centre S x S kept
(`ImageOps.fit`). Deviation from the papers' loaders, which crop their augmentations from
the full-resolution image: here they crop from the S x S image. Labels follow the sorted
WNIDs (torchvision's ImageFolder order, which CC, CMC, solo-learn and SCAN use).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from crlbench.data.base import ImageData, MissingDataError
from crlbench.data.stream import ImageFiles
from crlbench.errors import UserError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
# ILSVRC-2012's train classes hold 732 to 1,300 images each.
IMAGENET_TRAIN_PER_CLASS = (732, 1300)
IMAGENET_VAL_PER_CLASS = 50


@dataclass(frozen=True)
class PinnedSubset:
    """One pinned definition: its classes, where they come from and what the tree must hold."""

    name: str
    summary: str
    wnids_file: str  # under crlbench/data/wnids/
    sha256: str  # of that file
    source: str  # where the list was taken from
    layout: str  # "imagenet" or "tiny"
    image_size: int  # side the images are decoded to
    train_total: int | None  # images in train, where the list's source gives it
    train_per_class: tuple[int, int]  # (fewest, most) train images a class may hold
    val_per_class: int  # exactly

    @property
    def directory(self) -> str:
        """The folder under data.root that holds the tree."""
        return "tiny-imagenet-200" if self.layout == "tiny" else "imagenet"

    def wnids(self) -> list[str]:
        """The list as shipped, in its source's order."""
        return read_wnids(self.wnids_file)

    def classes(self) -> list[str]:
        """The WNIDs in label order (sorted, as torchvision's ImageFolder numbers them)."""
        return sorted(self.wnids())

    def definition(self) -> dict[str, object]:
        """What a record keeps of the definition."""
        return {"wnids": self.wnids_file, "wnids_sha256": self.sha256, "source": self.source,
                "train_total": self.train_total, "val_per_class": self.val_per_class,
                "decoded_to": f"{self.image_size}x{self.image_size}, shorter side resized and "
                              "centre-cropped"}


def read_wnids(filename: str) -> list[str]:
    text = resources.files("crlbench.data").joinpath("wnids", filename).read_text("ascii")
    return text.split()


def file_sha256(filename: str) -> str:
    data = resources.files("crlbench.data").joinpath("wnids", filename).read_bytes()
    return hashlib.sha256(data).hexdigest()


def _scan_subset(classes: int, summary: str, sha256: str) -> PinnedSubset:
    """One of SCAN's lists: no train totals given, so only ImageNet's range per class."""
    source = ("SCAN (Van Gansbeke et al. 2020), wvangansbeke/Unsupervised-Classification "
              f"data/imagenet_subsets/imagenet_{classes}.txt at 952ec31")
    return PinnedSubset(f"imagenet{classes}_scan", summary, f"imagenet{classes}_scan.txt",
                        sha256, source, "imagenet", 224, None, IMAGENET_TRAIN_PER_CLASS,
                        IMAGENET_VAL_PER_CLASS)


def _cc_subset(name: str, summary: str, filename: str, sha256: str, source_file: str,
               train_total: int) -> PinnedSubset:
    """One of CC's lists: its train total is 1,300 images a class, ImageNet's most."""
    source = ("Contrastive Clustering (Li et al. 2021), Yunfan-Li/Contrastive-Clustering "
              f"datasets/{source_file} at 61daba8")
    return PinnedSubset(name, summary, filename, sha256, source, "imagenet", 224, train_total,
                        (1300, 1300), IMAGENET_VAL_PER_CLASS)


SUBSETS = (
    _cc_subset("imagenet10", "ImageNet-10: 10 ImageNet classes of CC and DAC, 13,000/500",
               "imagenet10.txt",
               "e966ac0dac69bd6d93261cad225f6900a85dc1ef4aee098b1d2ecba988def8be",
               "ImageNet-10.txt", 13_000),
    _cc_subset("imagenet_dogs", "ImageNet-Dogs: 15 dog breeds of CC and DAC, 19,500/750",
               "imagenet_dogs.txt",
               "4667a7ea6e7bdcb8e68afa26f8171defd377d1ae0fca3bb880e90d87440e52ad",
               "ImageNet-dogs.txt", 19_500),
    PinnedSubset("imagenet100_cmc", "ImageNet-100 of CMC and solo-learn, 126,689/5,000",
                 "imagenet100_cmc.txt",
                 "79f3f1552ccc478ce24bd934b4573625db584ddc1f4643ae23c994a94cb11397",
                 "CMC (Tian et al. 2020), HobbitLong/CMC imagenet100.txt at 7b227be "
                 "(solo-learn ships the same list)", "imagenet", 224, 126_689,
                 IMAGENET_TRAIN_PER_CLASS, IMAGENET_VAL_PER_CLASS),
    _scan_subset(50, "ImageNet-50 of SCAN, val 2,500",
                 "1bf348de16b5d843b7e410a1ca302345dc74c27e9093bd327addec0c216da1f9"),
    _scan_subset(100, "ImageNet-100 of SCAN (not CMC's), val 5,000",
                 "cc76c3260eea6dd829d363702c89f321195dc45e060091558160ebff95d3f938"),
    _scan_subset(200, "ImageNet-200 of SCAN, val 10,000",
                 "8f129a78304272c83c39eb362ffd340395f60422b27a4134b71d448613a49766"),
    PinnedSubset("tiny_imagenet", "Tiny-ImageNet: 200 classes, 64x64, 100,000/10,000",
                 "tiny_imagenet.txt",
                 "a36eb4b603007f1985cdfbfc5987166a2710b3c6f0f6d3e29636fc129bba527b",
                 "Tiny-ImageNet (Stanford CS231n) tiny-imagenet-200/wnids.txt", "tiny", 64,
                 100_000, (500, 500), 50),
)
BY_NAME = {subset.name: subset for subset in SUBSETS}


# ---- listing the tree -----------------------------------------------------------------------

def _images(directory: Path) -> list[Path]:
    """The image files directly in `directory`, sorted by name."""
    with os.scandir(directory) as entries:
        return sorted(Path(e.path) for e in entries
                      if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)
                      and not e.name.startswith("."))


def _missing(subset: PinnedSubset, base: Path, what: Path) -> MissingDataError:
    layout = ("train/<wnid>/images/*.JPEG and val/images + val/val_annotations.txt"
              if subset.layout == "tiny" else "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG")
    return MissingDataError(
        f"dataset {subset.name}: {what} not found; {subset.name} reads {base}/{layout} "
        f"({len(subset.wnids())} classes, `crlbench datasets --classes {subset.name}` lists "
        "them): put the tree there or pass data.root=PATH to the folder that holds "
        f"{subset.directory}/")


def _class_dir(subset: PinnedSubset, base: Path, wnid: str) -> Path:
    directory = base / "train" / wnid
    if subset.layout == "tiny":
        directory = directory / "images"
    if not directory.is_dir():
        raise _missing(subset, base, directory)
    return directory


def _val_annotations(subset: PinnedSubset, base: Path) -> dict[str, str]:
    """Tiny-ImageNet's validation labels: file name -> wnid."""
    path = base / "val" / "val_annotations.txt"
    if not path.is_file():
        raise _missing(subset, base, path)
    labels = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 2:
            raise UserError(f"dataset {subset.name}: line {number} of {path} is not "
                            "'<file>\\t<wnid>\\t...'; replace it with the release's file")
        labels[fields[0]] = fields[1]
    return labels


def _val_split(subset: PinnedSubset, base: Path) -> dict[str, list[Path]]:
    """The validation images of each class, by wnid."""
    wnids = subset.wnids()
    if subset.layout == "imagenet":
        found = {}
        for wnid in wnids:
            directory = base / "val" / wnid
            if not directory.is_dir():
                raise _missing(subset, base, directory)
            found[wnid] = _images(directory)
        return found
    images = base / "val" / "images"
    if not images.is_dir():
        raise _missing(subset, base, images)
    annotations = _val_annotations(subset, base)
    found = {wnid: [] for wnid in wnids}
    for path in _images(images):
        wnid = annotations.get(path.name)
        if wnid is None:
            raise UserError(f"dataset {subset.name}: {path} has no line in "
                            f"{base / 'val' / 'val_annotations.txt'}; the two do not belong "
                            "together: replace them with the release's")
        if wnid not in found:
            raise UserError(f"dataset {subset.name}: {base / 'val' / 'val_annotations.txt'} "
                            f"labels {path.name} {wnid}, which is not one of its "
                            f"{len(wnids)} classes")
        found[wnid].append(path)
    return found


def _count_error(subset: PinnedSubset, where: Path, held: int, expected: str) -> UserError:
    return UserError(f"dataset {subset.name}: {where} holds {held:,} images, the pinned "
                     f"definition expects {expected} ({subset.source}); the tree is not the "
                     "release the definition pins: replace the missing or extra files")


def list_splits(subset: PinnedSubset, root: Path) -> dict[str, dict[str, list[Path]]]:
    """{"train": {wnid: paths}, "val": {wnid: paths}} of the tree under root, checked against
    the definition; MissingDataError or UserError in one line where they disagree."""
    base = root / subset.directory
    if not base.is_dir():
        raise _missing(subset, base, base)
    train = {wnid: _images(_class_dir(subset, base, wnid)) for wnid in subset.wnids()}
    low, high = subset.train_per_class
    for wnid, paths in train.items():
        if not low <= len(paths) <= high:
            expected = f"{low:,}" if low == high else f"{low:,} to {high:,}"
            raise _count_error(subset, _class_dir(subset, base, wnid), len(paths), expected)
    total = sum(len(paths) for paths in train.values())
    if subset.train_total is not None and total != subset.train_total:
        raise _count_error(subset, base / "train", total,
                           f"{subset.train_total:,} in its {len(train)} classes")
    val = _val_split(subset, base)
    for wnid, paths in val.items():
        if len(paths) != subset.val_per_class:
            where = base / "val" / (wnid if subset.layout == "imagenet" else "images")
            raise _count_error(subset, where, len(paths),
                               f"{subset.val_per_class} of class {wnid}")
    return {"train": train, "val": val}


# ---- decoding -------------------------------------------------------------------------------

def decode(path: Path, name: str, side: int) -> Tensor:
    """uint8 [3, side, side]: RGB, shorter side resized to `side`, centre kept."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (side, side))  # JPEG: let libjpeg decode at a reduced scale
            fitted = ImageOps.fit(image.convert("RGB"), (side, side), Image.Resampling.BILINEAR)
            pixels = np.asarray(fitted)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"dataset {name}: cannot decode image {path}: {e}; "
                        "replace the file with the release's") from e
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


def check(subset: PinnedSubset, root: Path) -> None:
    """What the preflight runs: the tree agrees with the definition (nothing decoded)."""
    list_splits(subset, root)


def _split(subset: PinnedSubset, by_class: dict[str, list[Path]], side: int,
           stream: bool) -> tuple[Tensor | ImageFiles, Tensor]:
    classes = subset.classes()
    paths = [path for wnid in classes for path in by_class[wnid]]
    labels = torch.tensor([i for i, wnid in enumerate(classes) for _ in by_class[wnid]],
                          dtype=torch.int64)
    files = ImageFiles(paths, subset.name, side, decode)
    return (files if stream else files[:]), labels


def load(subset: PinnedSubset, root: Path, image_size: int | None = None,
         stream: bool = False) -> ImageData:
    """Both splits at image_size (the definition's side when None): decoded into memory, or
    as ImageFiles read while the run trains when `stream`. ImageNet's val is the test split."""
    side = image_size or subset.image_size
    splits = list_splits(subset, root)
    train_images, train_labels = _split(subset, splits["train"], side, stream)
    test_images, test_labels = _split(subset, splits["val"], side, stream)
    return ImageData(name=subset.name, train_images=train_images, train_labels=train_labels,
                     test_images=test_images, test_labels=test_labels,
                     num_classes=len(subset.classes()), class_names=subset.classes())
