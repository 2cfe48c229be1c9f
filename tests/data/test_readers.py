"""crlbench.data: readers of the real on-disk formats, on tiny files written into tmp_path."""

from __future__ import annotations

import gzip
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from formats import (
    pattern,
    write_cifar10,
    write_cifar100,
    write_idx,
    write_mnist,
    write_pickle,
    write_png,
    write_stl10,
)
from sklearn.datasets import load_digits

from crlbench import registry
from crlbench.data import (
    DatasetCache,
    DatasetSource,
    ImageData,
    MissingDataError,
    catalog,
    mnist,
    resize,
    resize_images,
)
from crlbench.errors import UserError
from crlbench.resolve import check_available, dataset_names, load_dataset, resolve_dataset

BUILTINS = ["digits", "digits_rgb", "mnist", "fashion_mnist", "cifar10", "cifar100", "cifar20",
            "stl10", "imagenet10", "imagenet_dogs", "imagenet100_cmc", "imagenet50_scan",
            "imagenet100_scan", "imagenet200_scan", "tiny_imagenet"]


# --- catalogue and names ---------------------------------------------------------------------


def test_builtin_catalogue():
    assert registry.datasets.names() == sorted(BUILTINS)  # every built-in is registered
    for name in BUILTINS:
        entry = registry.datasets.entry(name)
        assert entry.builtin and entry.obj.name == name
        assert entry.obj.summary and "\n" not in entry.obj.summary
    infos = {name: registry.datasets.get(name) for name in BUILTINS}
    assert (infos["cifar20"].num_classes, infos["stl10"].image_size) == (20, 96)
    assert resolve_dataset("mnist").provenance()["target"] == "crlbench.data.catalog:MNIST"


def test_dataset_names_adds_folders_and_refuses_clashes():
    assert dataset_names() == sorted(BUILTINS)  # as registered in crlbench.datasets
    assert dataset_names({"zeta": "/z", "myfolder": "/i"}) == [*sorted(BUILTINS), "myfolder",
                                                                "zeta"]
    with pytest.raises(UserError, match=r"cifar10.*registered dataset"):
        dataset_names({"cifar10": "/somewhere"})


def test_unknown_dataset_lists_valid_names(tmp_path):
    for call in (load_dataset, check_available):
        with pytest.raises(UserError) as info:
            call("cifar11", root=tmp_path, folders={"mine": str(tmp_path)})
        message = str(info.value)
        assert "cifar11" in message
        assert all(name in message for name in [*BUILTINS, "mine"])
        assert "\n" not in message


# --- digits ----------------------------------------------------------------------------------


def test_digits_shapes_values_and_partition(tmp_path):
    data = load_dataset("digits", root=tmp_path / "absent")
    assert data.train_images.shape == (1437, 1, 8, 8)
    assert data.test_images.shape == (360, 1, 8, 8)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert (data.num_classes, data.channels, data.image_size) == (10, 1, 8)
    assert data.unlabeled_images is None
    bunch = load_digits()
    scaled = np.rint(bunch.images * 255 / 16).astype(np.uint8)
    assert set(np.unique(data.train_images.numpy())) <= set(np.unique(scaled))
    assert int(data.train_images.max()) == 255
    # train + test is exactly the whole dataset: disjoint and complete, labels kept.
    full = Counter((img.tobytes(), int(t)) for img, t in zip(scaled, bunch.target, strict=True))
    ours = Counter(
        (img[0].numpy().tobytes(), int(t))
        for images, labels in ((data.train_images, data.train_labels),
                               (data.test_images, data.test_labels))
        for img, t in zip(images, labels, strict=True)
    )
    assert ours == full


def test_digits_split_is_fixed_and_stratified(tmp_path):
    first = load_dataset("digits", root=tmp_path)
    np.random.seed(123)  # the split must not depend on global seeds
    torch.manual_seed(123)
    second = load_dataset("digits", root=tmp_path / "other")
    assert first is not second
    assert torch.equal(first.test_images, second.test_images)
    assert torch.equal(first.test_labels, second.test_labels)
    per_class = torch.bincount(first.test_labels, minlength=10)
    totals = per_class + torch.bincount(first.train_labels, minlength=10)
    assert torch.all((per_class.float() - 0.2 * totals.float()).abs() <= 1)


# --- MNIST / Fashion-MNIST -------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    arrays = write_mnist(tmp_path / "MNIST" / "raw", gz=gz)
    data = load_dataset("mnist", root=tmp_path)
    assert data.train_images.shape == (5, 1, 28, 28) and data.test_images.shape == (3, 1, 28, 28)
    assert data.train_images.dtype == torch.uint8
    assert data.train_labels.tolist() == [3, 1, 4, 1, 5]
    assert data.test_labels.tolist() == [9, 2, 6]
    train = arrays["train-images-idx3-ubyte"]
    assert int(data.train_images[2, 0, 5, 17]) == int(train[2, 5, 17]) == (2 * 31 + 15 + 187) % 256
    assert torch.equal(data.test_images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert data.class_names == [str(d) for d in range(10)]


def test_fashion_mnist_search_order(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "DEBIAN_FASHION", tmp_path / "debian")
    write_mnist(tmp_path / "fashion-mnist", gz=True, seed=50)
    data = load_dataset("fashion_mnist", root=tmp_path)
    assert int(data.train_images[0, 0, 0, 0]) == 50
    assert data.class_names[9] == "Ankle boot"
    write_mnist(tmp_path / "FashionMNIST" / "raw", seed=7)  # torchvision's layout comes first
    assert int(load_dataset("fashion_mnist", root=tmp_path).train_images[0, 0, 0, 0]) == 7


def test_mnist_missing_lists_searched_directories(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "DEBIAN_FASHION", tmp_path / "debian")
    (tmp_path / "mnist").mkdir()
    write_idx(tmp_path / "mnist" / "train-images-idx3-ubyte", pattern(1, 1, 28, 28)[:, 0])
    with pytest.raises(MissingDataError) as info:
        load_dataset("mnist", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message and str(tmp_path / "mnist") in message
    assert "t10k-labels-idx1-ubyte" in message and "data.download=true" in message
    with pytest.raises(MissingDataError, match="debian"):
        check_available("fashion_mnist", root=tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_is_refused(tmp_path, gz):
    write_mnist(tmp_path / "mnist", gz=gz)
    path = tmp_path / "mnist" / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    raw = raw[:-100]
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(UserError) as info:
        load_dataset("mnist", root=tmp_path)
    message = str(info.value)
    assert str(path) in message and "truncated" in message
    size = 16 + 3 * 28 * 28
    assert f"needs {size} bytes" in message and f"has {size - 100}" in message


def test_idx_wrong_magic_and_broken_gzip_are_refused(tmp_path):
    write_mnist(tmp_path / "mnist")
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte"
    write_idx(labels, np.zeros((5, 1), dtype=np.uint8))  # 2-D: magic 0x00000802
    with pytest.raises(UserError, match=r"magic number 0x00000802, expected 0x00000801"):
        load_dataset("mnist", root=tmp_path)
    labels.unlink()
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(UserError, match=r"cannot read .*train-labels-idx1-ubyte\.gz"):
        load_dataset("mnist", root=tmp_path)


def test_idx_label_count_and_range_are_checked(tmp_path):
    write_mnist(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", np.array([1, 2], dtype=np.uint8))
    with pytest.raises(UserError, match="2 labels for 3 images"):
        load_dataset("mnist", root=tmp_path)
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", np.array([1, 2, 10], dtype=np.uint8))
    with pytest.raises(UserError, match=r"labels in 1\.\.10, expected 0\.\.9"):
        load_dataset("mnist", root=tmp_path)


DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian package dataset-fashion-mnist absent")
def test_real_debian_fashion_mnist(tmp_path):
    data = load_dataset("fashion_mnist", root=tmp_path)
    assert data.train_images.shape == (60000, 1, 28, 28)
    assert data.test_images.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.train_labels).tolist() == [6000] * 10
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10
    assert data.num_classes == 10 and int(data.train_images.max()) == 255


# --- CIFAR -----------------------------------------------------------------------------------


def test_cifar10_batches(tmp_path):
    train, train_labels, test, test_labels = write_cifar10(tmp_path)
    data = load_dataset("cifar10", root=tmp_path)
    assert data.train_images.shape == (10, 3, 32, 32) and data.test_images.shape == (3, 3, 32, 32)
    assert data.train_labels.tolist() == train_labels and data.test_labels.tolist() == test_labels
    # Image 7 lives in data_batch_4, row 1; its green plane starts at column 1024 of the row.
    assert int(data.train_images[7, 1, 4, 9]) == (7 * 31 + 67 + 12 + 99) % 256
    assert torch.equal(data.train_images, torch.from_numpy(train))
    assert torch.equal(data.test_images, torch.from_numpy(test))
    assert data.class_names[1] == "automobile" and data.num_classes == 10


def test_cifar100_fine_and_cifar20_coarse(tmp_path):
    splits = write_cifar100(tmp_path)
    fine = load_dataset("cifar100", root=tmp_path)
    assert fine.num_classes == 100 and fine.train_labels.tolist() == [99, 0, 42, 7]
    assert fine.test_labels.tolist() == [5, 64] and fine.class_names[42] == "fine42"
    coarse = load_dataset("cifar20", root=tmp_path)
    assert coarse.num_classes == 20 and coarse.train_labels.tolist() == [19, 4, 0, 13]
    assert coarse.test_labels.tolist() == [17, 2] and coarse.class_names[19] == "coarse19"
    assert torch.equal(coarse.test_images.reshape(2, -1), torch.from_numpy(splits["test"][b"data"]))
    assert torch.equal(fine.train_images, coarse.train_images)


def test_cifar_missing_file_names_path(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    expected = str(tmp_path / "cifar-10-batches-py" / "data_batch_3") + " not found"
    for call in (load_dataset, check_available):
        with pytest.raises(MissingDataError) as info:
            call("cifar10", root=tmp_path)
        assert expected in str(info.value)
        assert "data.root=PATH" in str(info.value) and "data.download=true" in str(info.value)
    with pytest.raises(MissingDataError, match="cifar-100-python/train not found"):
        load_dataset("cifar20", root=tmp_path)


def test_cifar_corrupt_pickle_and_missing_key(tmp_path):
    write_cifar100(tmp_path)
    path = tmp_path / "cifar-100-python" / "test"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(UserError, match=re.escape(f"{path} is not a readable CIFAR pickle")):
        load_dataset("cifar100", root=tmp_path)
    write_pickle(path, {b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [0]})
    with pytest.raises(UserError, match="has no key 'coarse_labels'"):
        load_dataset("cifar20", root=tmp_path)


# --- STL-10 ----------------------------------------------------------------------------------


def test_stl10_column_major_and_labels(tmp_path):
    images = write_stl10(tmp_path)
    (tmp_path / "stl10_binary" / "class_names.txt").write_text(
        "\n".join(f"class{i}" for i in range(10)) + "\n")
    data = load_dataset("stl10", root=tmp_path)
    assert data.train_images.shape == (3, 3, 96, 96) and data.test_images.shape == (2, 3, 96, 96)
    assert data.unlabeled_images.shape == (4, 3, 96, 96)
    # Pixel (row 2, column 40): x contributes 11 per column, y 3 per row, so a transpose shows.
    assert int(data.train_images[1, 2, 2, 40]) == (31 + 2 * 67 + 6 + 440) % 256
    assert int(data.train_images[1, 2, 40, 2]) == (31 + 2 * 67 + 120 + 22) % 256
    for split in ("train", "test", "unlabeled"):
        assert torch.equal(getattr(data, f"{split}_images"), torch.from_numpy(images[split]))
    assert data.train_labels.tolist() == [0, 9, 4] and data.test_labels.tolist() == [1, 2]
    assert data.class_names[3] == "class3"
    assert data.pretrain_images(True).shape[0] == 7
    assert torch.equal(data.pretrain_images(True)[3:], data.unlabeled_images)
    assert data.pretrain_images(False) is data.train_images


def test_stl10_unlabeled_only_when_requested(tmp_path):
    write_stl10(tmp_path, unlabeled=False)
    data = load_dataset("stl10", root=tmp_path, use_unlabeled=False)
    assert data.unlabeled_images is None and data.class_names is None
    check_available("stl10", root=tmp_path, use_unlabeled=False)
    for call in (load_dataset, check_available):
        with pytest.raises(MissingDataError) as info:
            call("stl10", root=tmp_path, use_unlabeled=True)
        assert "unlabeled_X.bin not found" in str(info.value)
        assert "data.use_unlabeled=false" in str(info.value)


def test_stl10_truncated_file_is_refused(tmp_path):
    write_stl10(tmp_path, unlabeled=False)
    path = tmp_path / "stl10_binary" / "test_X.bin"
    path.write_bytes(path.read_bytes()[:-1])
    message = f"{path} is {2 * 27648 - 1} bytes, not a positive multiple of 27648"
    with pytest.raises(UserError, match=re.escape(message)):
        load_dataset("stl10", root=tmp_path, use_unlabeled=False)


def test_stl10_label_count_mismatch(tmp_path):
    write_stl10(tmp_path, unlabeled=False)
    np.array([1, 2, 3], dtype=np.uint8).tofile(tmp_path / "stl10_binary" / "test_y.bin")
    with pytest.raises(UserError, match="3 labels for the 2 images"):
        load_dataset("stl10", root=tmp_path, use_unlabeled=False)


# --- ImageFolder -----------------------------------------------------------------------------

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (10, 20, 30)


def write_folder(root: Path, test_dir: str = "test") -> None:
    write_png(root / "train" / "dog" / "a.png", RED)
    write_png(root / "train" / "dog" / "b.png", GREEN)
    write_png(root / "train" / "cat" / "x.png", BLUE)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    write_png(root / test_dir / "dog" / "c.png", GREEN)


def test_image_folder(tmp_path):
    write_folder(tmp_path / "tiny")
    folders = {"tiny": str(tmp_path / "tiny")}
    check_available("tiny", root=tmp_path, folders=folders)
    data = load_dataset("tiny", root=tmp_path / "unused", folders=folders)
    assert data.class_names == ["cat", "dog"] and data.num_classes == 2
    assert data.train_images.shape == (3, 3, 6, 6) and data.test_images.shape == (1, 3, 6, 6)
    assert data.train_labels.tolist() == [0, 1, 1] and data.test_labels.tolist() == [1]
    assert data.train_images[0, :, 3, 3].tolist() == list(BLUE)
    assert data.train_images[1, :, 0, 5].tolist() == list(RED)
    assert data.test_images[0, :, 5, 0].tolist() == list(GREEN)


def test_image_folder_val_and_errors(tmp_path):
    root = tmp_path / "f"
    write_folder(root, test_dir="val")
    folders = {"f": str(root)}
    assert load_dataset("f", root=tmp_path, folders=folders).test_labels.tolist() == [1]
    write_png(root / "val" / "bird" / "z.png", RED)
    with pytest.raises(UserError, match=r"'bird' .* not among the train classes \(cat, dog\)"):
        load_dataset("f", root=tmp_path, folders=folders)
    with pytest.raises(UserError, match=re.escape(f"{tmp_path / 'nowhere' / 'train'} not found")):
        check_available("g", root=tmp_path, folders={"g": str(tmp_path / "nowhere")})
    (root / "val" / "bird" / "z.png").unlink()
    (root / "val" / "bird").rmdir()
    write_png(root / "train" / "dog" / "big.png", RED, size=(8, 5))
    with pytest.raises(UserError, match=r"differ in size.*data\.image_size=N"):
        load_dataset("f", root=tmp_path, folders=folders)
    data = load_dataset("f", root=tmp_path, folders=folders, image_size=4)
    assert data.train_images.shape == (4, 3, 4, 4) and data.test_images.shape == (1, 3, 4, 4)
    assert data.train_images[3, :, 1, 2].tolist() == list(RED)  # a constant image stays constant


def test_image_folder_corrupt_image(tmp_path):
    write_folder(tmp_path / "f")
    bad = tmp_path / "f" / "train" / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG garbage")
    with pytest.raises(UserError, match=re.escape(f"cannot decode image {bad}")):
        load_dataset("f", root=tmp_path, folders={"f": str(tmp_path / "f")})


# --- resizing, caching, availability, download --------------------------------------------------


def test_resize_images_constant_and_shape(monkeypatch):
    constant = torch.full((3, 2, 8, 8), 77, dtype=torch.uint8)
    out = resize_images(constant, 32)
    assert out.shape == (3, 2, 32, 32) and out.dtype == torch.uint8
    assert torch.all(out == 77)
    assert torch.all(resize_images(torch.full((2, 3, 96, 96), 200, dtype=torch.uint8), 32) == 200)
    assert resize_images(constant, 8) is constant
    # Antialiased 2 -> 1 averages the four pixels: 0.75 rounds to 1 (truncation would give 0).
    quarter = torch.tensor([[[[1, 1], [1, 0]]]], dtype=torch.uint8)
    assert resize_images(quarter, 1).tolist() == [[[[1]]]]
    # Antialiased 4 -> 1 weighs rows and columns 5:7:7:5, so a 240 border over a black centre
    # gives 240 * (1 - (14/24)^2) = 158.3; without antialiasing only the black centre counts.
    frame = torch.full((1, 1, 4, 4), 240, dtype=torch.uint8)
    frame[..., 1:3, 1:3] = 0
    assert resize_images(frame, 1).item() == 158
    images = torch.from_numpy(pattern(5, 3, 10, 10))
    whole = resize_images(images, 7)
    monkeypatch.setattr(resize, "CHUNK_ELEMENTS", 1)  # one image per chunk
    assert torch.equal(resize_images(images, 7), whole)


def test_load_dataset_resizes_every_split(tmp_path):
    write_stl10(tmp_path)
    data = load_dataset("stl10", root=tmp_path, image_size=32)
    for images in (data.train_images, data.test_images, data.unlabeled_images):
        assert images.shape[-2:] == (32, 32) and images.dtype == torch.uint8
    assert data.image_size == 32 and data.train_labels.tolist() == [0, 9, 4]
    digits = load_dataset("digits", root=tmp_path, image_size=16)
    assert digits.train_images.shape == (1437, 1, 16, 16)
    with pytest.raises(UserError, match="image_size must be a positive integer"):
        load_dataset("digits", root=tmp_path, image_size=0)


def test_cache_keeps_the_last_dataset(tmp_path):
    cache, digits = DatasetCache(), resolve_dataset("digits")
    first = cache.load(digits, root=tmp_path)
    assert cache.load(digits, root=tmp_path) is first
    resized = cache.load(digits, root=tmp_path, image_size=12)
    assert resized is not first
    assert cache.load(digits, root=tmp_path) is not first  # only the last one is kept
    assert cache.loads == 3
    cache.clear()
    assert cache.load(digits, root=tmp_path) is not first and cache.loads == 4
    # another cache (another executor) shares nothing; loading by name is never cached
    assert DatasetCache().load(digits, root=tmp_path) is not first
    assert load_dataset("digits", root=tmp_path) is not load_dataset("digits", root=tmp_path)


def test_a_source_is_a_registered_dataset_or_a_folder(tmp_path):
    folder = resolve_dataset("mine", {"mine": str(tmp_path)})
    assert folder.folder == tmp_path and folder.entry is None and folder.channels == 3
    assert folder.provenance() == {"folder": str(tmp_path)}
    with pytest.raises(ValueError, match="not both"):
        DatasetSource("x")


def test_root_may_start_with_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_cifar10(tmp_path / "data")
    check_available("cifar10", root="~/data")
    assert load_dataset("cifar10", root="~/data").train_images.shape[0] == 10


def test_check_available_is_cheap_and_decodes_nothing(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (base / name).write_bytes(b"garbage")
    check_available("cifar10", root=tmp_path)  # files exist: no error, nothing read
    with pytest.raises(UserError, match="not a readable CIFAR pickle"):
        load_dataset("cifar10", root=tmp_path)
    check_available("digits", root=tmp_path / "absent")
    with pytest.raises(MissingDataError):
        check_available("cifar100", root=tmp_path)
    check_available("cifar100", root=tmp_path, download=True)  # would be fetched
    with pytest.raises(UserError, match="not found"):  # folders cannot be downloaded
        check_available("f", root=tmp_path, download=True, folders={"f": str(tmp_path / "f")})


def test_download_fetches_missing_files_then_reads_them(tmp_path, monkeypatch):
    calls = []

    def fake_fetch(name, root, use_unlabeled):
        calls.append((name, root, use_unlabeled))
        write_cifar100(root)

    monkeypatch.setattr(catalog, "fetch", fake_fetch)
    with pytest.raises(MissingDataError):
        load_dataset("cifar20", root=tmp_path)
    assert calls == []
    data = load_dataset("cifar20", root=tmp_path, download=True)
    assert calls == [("cifar20", tmp_path, True)]
    assert data.train_labels.tolist() == [19, 4, 0, 13]


def test_image_data_checks_its_shape():
    images = torch.zeros((2, 3, 4, 5), dtype=torch.uint8)
    labels = torch.zeros(2, dtype=torch.int64)
    data = ImageData("x", images, labels, images, labels, num_classes=1)
    assert data.channels == 3
    with pytest.raises(ValueError, match="4x5, not square"):
        _ = data.image_size
    with pytest.raises(ValueError, match="labels must be int64"):
        ImageData("x", images, labels.int(), images, labels, num_classes=1)


def test_digits_rgb_paints_the_digits_split_in_colour():
    grey = load_dataset("digits", root="/nonexistent")
    rgb = load_dataset("digits_rgb", root="/nonexistent")
    assert rgb.train_images.shape == (len(grey.train_images), 3, 8, 8)
    assert torch.equal(rgb.train_labels, grey.train_labels)
    assert torch.equal(rgb.test_labels, grey.test_labels)
    assert torch.equal(load_dataset("digits_rgb", root="/nonexistent").test_images,
                       rgb.test_images)  # the colours are fixed, not random per load
    # ink pixels are brighter than background pixels in every channel of every image
    ink = grey.train_images[:, 0] == 255
    blank = grey.train_images[:, 0] == 0
    pixels = rgb.train_images.float()
    for i in range(0, len(pixels), 97):
        if ink[i].any() and blank[i].any():
            assert (pixels[i][:, ink[i]].min(dim=1).values
                    > pixels[i][:, blank[i]].max(dim=1).values).all()
    assert check_available("digits_rgb", root="/nonexistent") is None
