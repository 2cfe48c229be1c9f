"""(g) Streaming an image folder: the harness's streaming reader against a plain torchvision
DataLoader on the same folder, in decoded images/s.

Both read `<folder>/<class>/<image>` in the same order into uint8 batches [B, 3, S, S] on the
CPU, shorter side resized to S and the centre kept, with the same number of worker processes:

- harness: `crlbench.data.stream.read_batches` over `ImageFiles` (each worker decodes a whole
  batch; PIL's JPEG draft mode lets libjpeg decode at a reduced scale when S allows);
- torchvision: `datasets.ImageFolder` with `v2.Resize(S)`, `v2.CenterCrop(S)` and
  `v2.PILToTensor()` in a `DataLoader(batch_size=B, num_workers=W)`.

Without `stream_folder`, the part writes `stream_images` JPEGs of `stream_source_size` (about
ImageNet's typical 500x375) into a temporary folder first. One untimed pass warms the page
cache; then each reader reads the folder once per worker count. The mean absolute difference
between the two readers' pixels is reported (they resize with different code).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2

from crlbench.data.imagenet import decode
from crlbench.data.stream import ImageFiles, ranges, read_batches


def write_jpegs(folder: Path, count: int, size: tuple[int, int], classes: int,
                seed: int) -> None:
    """`count` photo-like JPEGs (smooth colour fields plus noise, quality 90) in `classes`
    class folders."""
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(count):
        directory = folder / f"class{i % classes:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        phase = rng.uniform(0, 6.3, 3)
        field = np.stack([np.sin(xx / (20 + 9 * c) + yy / (31 - 7 * c) + phase[c])
                          for c in range(3)], axis=-1)
        pixels = 127 + 90 * field + rng.normal(0, 12, (height, width, 3))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(
            directory / f"img{i:06d}.JPEG", quality=90)


def _timed(batches: Iterable[torch.Tensor]) -> tuple[float, int, torch.Tensor]:
    start = time.perf_counter()
    count, first = 0, None
    for batch in batches:
        count += len(batch)
        first = batch if first is None else first
    return time.perf_counter() - start, count, first


def _torchvision(folder: Path, side: int, batch: int, workers: int) -> DataLoader:
    transform = v2.Compose([v2.Resize(side, antialias=True), v2.CenterCrop(side),
                            v2.PILToTensor()])
    dataset = datasets.ImageFolder(str(folder), transform=transform)
    return (images for images, _ in DataLoader(dataset, batch_size=batch, shuffle=False,
                                               num_workers=workers))


def _files(folder: Path, side: int, workers: int) -> ImageFiles:
    # the order torchvision's ImageFolder reads: sorted classes, sorted files within each
    dataset = datasets.ImageFolder(str(folder))
    return ImageFiles([Path(p) for p, _ in dataset.samples], folder.name, side, decode,
                      workers)


def _measure(folder: Path, cfg: DictConfig, generated: bool) -> dict[str, Any]:
    side, batch = int(cfg.stream_side), int(cfg.stream_batch)
    files = _files(folder, side, 0)
    for path in files.paths:  # warm the page cache: both readers then read from memory
        path.read_bytes()
    rows = []
    difference = None
    for workers in cfg.workers:
        files.workers = workers
        ours_s, n, ours = _timed(read_batches(files, ranges(len(files), batch)))
        theirs_s, n_theirs, theirs = _timed(_torchvision(folder, side, batch, workers))
        if n != n_theirs:
            raise RuntimeError(f"the readers disagree on the folder: {n} and {n_theirs} images")
        difference = float((ours.float() - theirs.float()).abs().mean())
        rows.append({"workers": workers, "harness_images_per_s": n / ours_s,
                     "torchvision_images_per_s": n / theirs_s, "speedup": theirs_s / ours_s})
    return {"folder": str(folder) if not generated else None, "generated": generated,
            "images": len(files), "side": side, "batch_size": batch,
            "source_size": list(cfg.stream_source_size) if generated else None,
            "mean_abs_difference": difference, "runs": rows}


def measure_stream(cfg: DictConfig) -> dict[str, Any]:
    """The streaming part of `crlbench bench`."""
    if cfg.stream_folder:
        return _measure(Path(cfg.stream_folder).expanduser(), cfg, generated=False)
    with tempfile.TemporaryDirectory(prefix="crlbench-stream-") as tmp:
        folder = Path(tmp) / "folder"
        write_jpegs(folder, int(cfg.stream_images), tuple(cfg.stream_source_size), 10,
                    int(cfg.seed))
        return _measure(folder, cfg, generated=True)
