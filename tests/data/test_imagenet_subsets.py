"""Pinned ImageNet subsets: the shipped class lists, every definition checked against a
generated tree in ImageNet's (or Tiny-ImageNet's) layout, the errors of a tree that differs,
and the decoded images' labels, order, counts and crop."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from crlbench.cli import main
from crlbench.data import imagenet
from crlbench.data.base import MissingDataError
from crlbench.errors import UserError
from crlbench.registry import datasets

SIZES = {"imagenet10": 10, "imagenet_dogs": 15, "imagenet100_cmc": 100, "imagenet50_scan": 50,
         "imagenet100_scan": 100, "imagenet200_scan": 200, "tiny_imagenet": 200}
IMAGENET = [s for s in imagenet.SUBSETS if s.layout == "imagenet"]


def test_the_shipped_lists_are_the_pinned_ones():
    assert {s.name: len(s.wnids()) for s in imagenet.SUBSETS} == SIZES
    for subset in imagenet.SUBSETS:
        wnids = subset.wnids()
        assert imagenet.file_sha256(subset.wnids_file) == subset.sha256, subset.name
        assert all(re.fullmatch(r"n\d{8}", w) for w in wnids), subset.name
        assert len(set(wnids)) == len(wnids), subset.name
        assert subset.classes() == sorted(wnids)
    by = {s.name: set(s.wnids()) for s in imagenet.SUBSETS}
    # CMC's and SCAN's ImageNet-100 are different benchmarks; SCAN's subsets nest
    assert len(by["imagenet100_cmc"] & by["imagenet100_scan"]) == 12
    assert by["imagenet50_scan"] < by["imagenet100_scan"] < by["imagenet200_scan"]
    assert imagenet.BY_NAME["imagenet100_cmc"].wnids()[:2] == ["n02869837", "n01749939"]


def test_every_definition_is_a_registered_dataset():
    for subset in imagenet.SUBSETS:
        info = datasets.get(subset.name)
        assert (info.num_classes, info.channels, info.image_size) == (
            SIZES[subset.name], 3, subset.image_size)


# ---- generated trees (empty files: check only lists them) -----------------------------------

def _touch(directory: Path, names: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).touch()


def _train_counts() -> dict[str, int]:
    """Train images per class of one ImageNet tree that every ImageNet definition accepts:
    1,300 a class (ImageNet-10 and -Dogs want exactly that), CMC's classes summing to its
    126,689."""
    counts = {w: 1300 for s in IMAGENET for w in s.wnids()}
    cmc = imagenet.BY_NAME["imagenet100_cmc"]
    fixed = [w for w in cmc.wnids() if any(w in s.wnids() and s.train_total and s is not cmc
                                           for s in IMAGENET)]
    free = [w for w in cmc.wnids() if w not in fixed]
    rest = cmc.train_total - 1300 * len(fixed)
    for i, wnid in enumerate(free):
        counts[wnid] = rest // len(free) + (i < rest % len(free))
    return counts


def imagenet_tree(root: Path, counts: dict[str, int], val: int = 50) -> Path:
    for wnid, count in counts.items():
        _touch(root / "imagenet" / "train" / wnid, [f"{wnid}_{i}.JPEG" for i in range(count)])
        _touch(root / "imagenet" / "val" / wnid,
               [f"ILSVRC2012_val_{wnid}_{i}.JPEG" for i in range(val)])
    return root


def tiny_tree(root: Path, wnids: list[str], train: int = 500, val: int = 50) -> Path:
    base = root / "tiny-imagenet-200"
    lines = []
    for wnid in wnids:
        _touch(base / "train" / wnid / "images", [f"{wnid}_{i}.JPEG" for i in range(train)])
        names = [f"val_{wnid}_{i}.JPEG" for i in range(val)]
        _touch(base / "val" / "images", names)
        lines += [f"{name}\t{wnid}\t0\t0\t63\t63" for name in names]
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


@contextmanager
def in_memory_folder(fallback: Path) -> Iterator[Path]:
    """A folder for trees of many empty files: in memory (/dev/shm) where there is one, since
    a disk takes ten times longer to make them; removed afterwards."""
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else None
    try:
        yield root or fallback
    finally:
        if root is not None:
            shutil.rmtree(root)


@pytest.fixture
def fast_path(tmp_path) -> Iterator[Path]:
    with in_memory_folder(tmp_path) as root:
        yield root


@pytest.fixture(scope="module")
def full_trees(tmp_path_factory) -> Iterator[Path]:
    """Every definition's tree at its release's counts: about 520,000 empty files."""
    with in_memory_folder(tmp_path_factory.mktemp("data")) as root:
        imagenet_tree(root, _train_counts())
        tiny_tree(root, imagenet.BY_NAME["tiny_imagenet"].wnids())
        yield root


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SIZES))
def test_every_definition_accepts_a_tree_of_its_release(full_trees, name):
    subset = imagenet.BY_NAME[name]
    datasets.get(name).check(full_trees, False)  # what the preflight calls
    splits = imagenet.list_splits(subset, full_trees)
    assert set(splits["train"]) == set(splits["val"]) == set(subset.wnids())
    if subset.train_total is not None:
        assert sum(map(len, splits["train"].values())) == subset.train_total
    assert sum(map(len, splits["val"].values())) == subset.val_per_class * SIZES[name]


@pytest.fixture
def imagenet10_tree(fast_path) -> Path:
    return imagenet_tree(fast_path, dict.fromkeys(imagenet.BY_NAME["imagenet10"].wnids(), 1300))


def _check(name: str, root: Path) -> None:
    datasets.get(name).check(root, False)


def test_imagenet10_accepts_its_tree_and_refuses_a_missing_class(imagenet10_tree):
    _check("imagenet10", imagenet10_tree)
    wnid = imagenet.BY_NAME["imagenet10"].wnids()[3]
    for path in (imagenet10_tree / "imagenet" / "train" / wnid).iterdir():
        path.unlink()
    (imagenet10_tree / "imagenet" / "train" / wnid).rmdir()
    with pytest.raises(MissingDataError, match=rf"imagenet10: .*train/{wnid} not found.*"
                                               r"10 classes.*data.root=PATH"):
        _check("imagenet10", imagenet10_tree)


def test_a_class_with_an_image_too_few_or_a_val_image_too_many_is_refused(imagenet10_tree):
    wnid = imagenet.BY_NAME["imagenet10"].wnids()[0]
    train = imagenet10_tree / "imagenet" / "train" / wnid
    (train / f"{wnid}_0.JPEG").unlink()
    with pytest.raises(UserError, match=rf"{wnid} holds 1,299 images, the pinned definition "
                                        r"expects 1,300 \(Contrastive Clustering"):
        _check("imagenet10", imagenet10_tree)
    (train / f"{wnid}_0.JPEG").touch()
    (imagenet10_tree / "imagenet" / "val" / wnid / "extra.JPEG").touch()
    with pytest.raises(UserError, match=rf"holds 51 images.*expects 50 of class {wnid}"):
        _check("imagenet10", imagenet10_tree)


def test_a_wrong_train_total_is_refused_where_the_source_pins_one(fast_path):
    cmc = imagenet.BY_NAME["imagenet100_cmc"]
    imagenet_tree(fast_path, dict.fromkeys(cmc.wnids(), 1300))  # 130,000, each in range
    with pytest.raises(UserError, match=r"train holds 130,000 images, the pinned definition "
                                        r"expects 126,689 in its 100 classes"):
        _check("imagenet100_cmc", fast_path)


def test_a_scan_class_outside_imagenets_range_is_refused(fast_path):
    scan50 = imagenet.BY_NAME["imagenet50_scan"]
    counts = dict.fromkeys(scan50.wnids(), 900)
    counts[scan50.wnids()[-1]] = 700
    imagenet_tree(fast_path, counts)
    with pytest.raises(UserError, match=r"holds 700 images, the pinned definition expects "
                                        r"732 to 1,300"):
        _check("imagenet50_scan", fast_path)


def test_tiny_imagenet_refuses_val_images_its_annotations_do_not_label(fast_path):
    wnids = imagenet.BY_NAME["tiny_imagenet"].wnids()
    tiny_tree(fast_path, wnids, train=500, val=50)
    _check("tiny_imagenet", fast_path)
    (fast_path / "tiny-imagenet-200" / "val" / "images" / "stray.JPEG").touch()
    with pytest.raises(UserError, match=r"stray.JPEG has no line in .*val_annotations.txt"):
        _check("tiny_imagenet", fast_path)


def test_a_missing_tree_is_one_line_exit_2_before_any_run(tmp_path, tiny, capsys):
    code = main(["run", "suite=quickstart", *tiny, "dataset=imagenet10",
                 f"data.root={tmp_path / 'nowhere'}", "seeds=[0]", "method=simclr"])
    err = capsys.readouterr().err
    assert code == 2
    assert "dataset imagenet10:" in err and "imagenet not found" in err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.json"))


def test_datasets_lists_a_definitions_classes(capsys):
    assert main(["datasets", "--classes", "imagenet_dogs"]) == 0
    out = capsys.readouterr().out.split()
    assert out == imagenet.BY_NAME["imagenet_dogs"].classes()  # label order
    assert main(["datasets", "--classes", "cifar10"]) == 2
    assert "imagenet10, imagenet100_cmc" in capsys.readouterr().err


# ---- decoding real JPEGs --------------------------------------------------------------------

def _jpeg(path: Path, value: int, size: tuple[int, int]) -> None:
    """A flat image whose grey level is `value`, with a black border band on the long side
    (the centre crop must drop it)."""
    width, height = size
    pixels = np.full((height, width, 3), value, dtype=np.uint8)
    if width > height:
        pixels[:, : (width - height) // 2] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)


def test_load_labels_follow_sorted_wnids_and_files_their_names(tmp_path):
    subset = dataclasses.replace(imagenet.BY_NAME["imagenet10"], train_total=30,
                                 train_per_class=(3, 3), val_per_class=2)
    classes = subset.classes()
    value = {w: 20 + 20 * i for i, w in enumerate(classes)}
    for wnid in subset.wnids():
        for i in range(3):
            _jpeg(tmp_path / "imagenet" / "train" / wnid / f"{wnid}_{i}.JPEG",
                  value[wnid] + i, (48, 32))
        for i in range(2):
            _jpeg(tmp_path / "imagenet" / "val" / wnid / f"v{i}.JPEG", value[wnid], (40, 40))
    data = imagenet.load(subset, tmp_path, 16)
    assert data.train_images.shape == (30, 3, 16, 16)
    assert data.test_images.shape == (20, 3, 16, 16)
    assert data.train_labels.tolist() == [i for i in range(10) for _ in range(3)]
    assert data.test_labels.tolist() == [i for i in range(10) for _ in range(2)]
    assert data.class_names == classes
    means = data.train_images.float().mean(dim=(1, 2, 3))
    expected = [value[w] + i for w in classes for i in range(3)]
    assert np.allclose(means.numpy(), expected, atol=2.5)  # centre kept: no black band
    streamed = imagenet.load(subset, tmp_path, 16, stream=True)
    assert streamed.streamed and len(streamed.train_images) == 30
    assert torch.equal(streamed.train_images[:], data.train_images)
    assert torch.equal(streamed.test_labels, data.test_labels)


def test_tiny_imagenet_loads_val_labels_from_its_annotations(tmp_path):
    subset = dataclasses.replace(imagenet.BY_NAME["tiny_imagenet"], train_total=None,
                                 train_per_class=(1, 1), val_per_class=1)
    wnids = subset.wnids()
    base = tmp_path / "tiny-imagenet-200"
    lines = []
    for k, wnid in enumerate(reversed(wnids)):  # annotation order is not label order
        _jpeg(base / "train" / wnid / "images" / f"{wnid}_0.JPEG", 40, (64, 64))
        _jpeg(base / "val" / "images" / f"val_{k}.JPEG", k % 250, (64, 64))
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    data = imagenet.load(subset, tmp_path)
    assert data.test_images.shape == (200, 3, 64, 64)
    assert data.test_labels.tolist() == list(range(200))
    label_of = {w: i for i, w in enumerate(subset.classes())}
    for k, wnid in enumerate(reversed(wnids)):
        level = data.test_images[label_of[wnid]].float().mean().item()
        assert abs(level - k % 250) < 3, wnid
