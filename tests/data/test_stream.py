"""Streaming image folders: a folder of generated JPEGs and PNGs read as files gives the pixels,
labels, order and counts of the in-memory read, through the DataLoader pipeline too; a streamed
run equals the in-memory run and its record says which path it read; settings a user can get
wrong exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from crlbench.cli import main
from crlbench.data import DatasetSource
from crlbench.data.api import load_source
from crlbench.data.stream import ImageFiles, ranges, read_batches
from crlbench.errors import UserError
from crlbench.preprocess import channel_stats
from crlbench.store import scan

CLASSES = ("circle", "square", "triangle")


def _image(path: Path, seed: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **({"quality": 90} if path.suffix == ".jpg" else {}))


@pytest.fixture
def folder(tmp_path) -> Path:
    """An ImageFolder tree: 3 classes, 12 train and 4 test images each, JPEG and PNG, of
    several sizes."""
    root = tmp_path / "shapes"
    for c, name in enumerate(CLASSES):
        for split, count in (("train", 12), ("test", 4)):
            for i in range(count):
                suffix = ".jpg" if i % 2 else ".png"
                _image(root / split / name / f"{i:02d}{suffix}", 100 * c + i + len(split),
                       (24 + 4 * (i % 3), 20 + 2 * (i % 4)))
    return root


def _load(root: Path, stream: bool):
    return load_source(DatasetSource("shapes", folder=root), root=root, image_size=16,
                       stream=stream)


def test_a_streamed_folder_reads_what_memory_holds(folder):
    memory, streamed = _load(folder, False), _load(folder, True)
    assert streamed.streamed and not memory.streamed
    assert isinstance(streamed.train_images, ImageFiles)
    assert streamed.train_images.shape == memory.train_images.shape == (36, 3, 16, 16)
    assert len(streamed.test_images) == 12
    assert torch.equal(streamed.train_labels, memory.train_labels)
    assert streamed.train_labels.tolist() == [c for c in range(3) for _ in range(12)]
    assert torch.equal(streamed.train_images[:], memory.train_images)
    assert torch.equal(streamed.test_images[:], memory.test_images)
    assert streamed.class_names == memory.class_names == list(CLASSES)


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_in_a_shuffled_order_come_as_indexing_gives_them(folder, workers):
    memory, streamed = _load(folder, False), _load(folder, True).with_stream_workers(workers)
    order = torch.randperm(36, generator=torch.Generator().manual_seed(0))
    rows = [order[i:i + 8] for i in range(0, 36, 8)]
    batches = list(read_batches(streamed.train_images, rows))
    assert [len(b) for b in batches] == [8, 8, 8, 8, 4]
    for idx, batch in zip(rows, batches, strict=True):
        assert torch.equal(batch, memory.train_images[idx])
    assert torch.equal(torch.cat(list(read_batches(streamed.train_images, ranges(36, 10)))),
                       memory.train_images)


def test_take_and_concat_stay_files_and_train_plus_test_streams(folder):
    streamed = _load(folder, True)
    part = streamed.train_images.take(torch.tensor([5, 0, 30]))
    assert isinstance(part, ImageFiles) and len(part) == 3
    assert torch.equal(part[:], streamed.train_images[[5, 0, 30]])
    both = streamed.pretrain_images(use_unlabeled=False, train_split="train+test")
    assert isinstance(both, ImageFiles) and len(both) == 48
    assert torch.equal(both[36:], streamed.test_images[:])


def test_streamed_statistics_equal_the_in_memory_ones(folder):
    streamed, memory = _load(folder, True), _load(folder, False)
    assert channel_stats(streamed.train_images, chunk=7) == channel_stats(memory.train_images,
                                                                          chunk=7)


def test_a_corrupt_file_found_by_a_decoding_worker_is_one_line(folder):
    streamed = _load(folder, True).with_stream_workers(2)
    bad = streamed.train_images.paths[3]
    bad.write_bytes(b"not an image")
    with pytest.raises(UserError) as info:
        list(read_batches(streamed.train_images, ranges(36, 8)))
    message = str(info.value)
    assert message.startswith(f"dataset shapes: cannot decode image {bad}") and "\n" not in message


def _run(tiny, folder: Path, results: Path, *extra: str) -> dict:
    args = ["run", "suite=quickstart", *tiny, "dataset=shapes", f"data.folders.shapes={folder}",
            "data.image_size=16", "seeds=[0]", "method=simclr", "train.batch_size=12",
            "eval.knn_k=[5]", f"results.dir={results}", *extra]
    assert main(args) == 0
    (record,) = scan(results).records
    return record


@pytest.mark.slow
def test_a_streamed_run_equals_the_in_memory_run(tiny, folder, tmp_path):
    memory = _run(tiny, folder, tmp_path / "memory")
    streamed = _run(tiny, folder, tmp_path / "streamed", "data.stream=true",
                    "data.stream_workers=2")
    assert memory["data"]["reader"] == {"path": "memory"}
    assert streamed["data"]["reader"] == {"path": "stream", "workers": 2, "decoded_to": 16}
    assert streamed["run_id"] == memory["run_id"]  # the same pixels: the same run
    assert [h["loss"] for h in streamed["history"]] == [h["loss"] for h in memory["history"]]
    assert streamed["metrics"] == memory["metrics"]


@pytest.mark.parametrize(("extra", "expected"), [
    (["dataset=digits", "data.stream=true"], "dataset digits cannot stream (data.stream=true)"),
    (["dataset=shapes", "data.stream=true", "data.image_size=null", "train.batch_size=12"],
     "data.stream=true reads images as the run goes, so they must be decoded to one side"),
    (["data.stream_workers=-1"], "'data.stream_workers' must be 0"),
])
def test_stream_settings_a_user_can_get_wrong_exit_2(tiny, folder, tmp_path, capsys, extra,
                                                     expected):
    code = main(["run", "suite=quickstart", *tiny, f"data.folders.shapes={folder}",
                 "seeds=[0]", "method=simclr", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert expected in err and "\n" not in err
    assert not scan(tmp_path / "results").records
