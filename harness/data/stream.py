"""Streaming image folders: images that stay files on disk and are decoded as a run reads them.

`ImageFiles` stands in for the uint8 [N, 3, S, S] tensor of a dataset held in memory: it has
its length, shape and dtype, and indexing it decodes those images (in threads: PIL releases the
GIL while it decodes). What a run reads batch after batch goes through `read_batches`, which
for ImageFiles is a torch DataLoader whose worker processes decode the next batches while the
device trains on this one; the batch it yields is the uint8 tensor the in-memory path would
have given, so the same per-sample augmentation on the device follows either way.

`data.stream=true` selects this path for the datasets that can stream (ImageFolder trees of
`data.folders` and the pinned ImageNet subsets); the record's `data.reader` says which path a
run used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from crlbench.errors import UserError

# decode(path, dataset name, side) -> uint8 [3, side, side]; a module-level function, so that
# DataLoader workers can receive it
Decoder = Callable[[Path, str, int], Tensor]

DEFAULT_WORKERS = min(8, os.cpu_count() or 1)


class ImageFiles:
    """N image files, each decoded to uint8 [3, side, side] when read."""

    dtype = torch.uint8
    ndim = 4
    device = torch.device("cpu")

    def __init__(self, paths: Sequence[Path], name: str, side: int, decode: Decoder,
                 workers: int = DEFAULT_WORKERS):
        self.paths = list(paths)
        self.name = name
        self.side = side
        self.decode = decode
        self.workers = workers

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.paths), 3, self.side, self.side))

    def __len__(self) -> int:
        return len(self.paths)

    def numel(self) -> int:
        return self.shape.numel()

    def _rows(self, key) -> list[int]:
        if isinstance(key, slice):
            return list(range(len(self.paths)))[key]
        if isinstance(key, int):
            raise TypeError("index ImageFiles with a slice or a sequence of rows, as a batch")
        return [int(i) for i in torch.as_tensor(key).reshape(-1).tolist()]

    def __getitem__(self, key) -> Tensor:
        """The images at `key` (a slice, or rows), decoded: uint8 [k, 3, side, side]."""
        rows = self._rows(key)
        out = torch.empty((len(rows), 3, self.side, self.side), dtype=torch.uint8)

        def put(i: int) -> None:
            out[i] = self.decode(self.paths[rows[i]], self.name, self.side)

        with ThreadPoolExecutor(max(1, min(self.workers, len(rows)))) as pool:
            list(pool.map(put, range(len(rows))))  # list(): a decoding error is raised here
        return out

    def take(self, key) -> ImageFiles:
        """The files at `key`, still undecoded."""
        return ImageFiles([self.paths[i] for i in self._rows(key)], self.name, self.side,
                          self.decode, self.workers)

    def with_workers(self, workers: int) -> ImageFiles:
        """The same files, read by `workers` DataLoader processes (0: in this process)."""
        return ImageFiles(self.paths, self.name, self.side, self.decode, workers)

    @staticmethod
    def concat(parts: Sequence[ImageFiles | Tensor]) -> ImageFiles:
        if not all(isinstance(p, ImageFiles) for p in parts):
            raise TypeError("streamed images concatenate only with streamed images")
        first = parts[0]
        return ImageFiles([path for p in parts for path in p.paths], first.name, first.side,
                          first.decode, first.workers)


class _Decoded(Dataset):
    """The map-style view DataLoader workers decode from."""

    def __init__(self, files: ImageFiles):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor:
        files = self.files
        return files.decode(files.paths[i], files.name, files.side)


def _stack(images: list[Tensor]) -> Tensor:
    return torch.stack(images)


def read_batches(images: Tensor | ImageFiles, batches: Iterable[Tensor | range],
                 pin: bool = False) -> Iterator[Tensor]:
    """images[rows] for each batch of rows, in order: indexing for a tensor, a pipeline of
    DataLoader worker processes (each decoding whole batches ahead) for ImageFiles."""
    if not isinstance(images, ImageFiles):
        for rows in batches:
            yield images[rows.to(images.device, non_blocking=True) if isinstance(rows, Tensor)
                         else slice(rows.start, rows.stop)]
        return
    lists = [[int(i) for i in (r.tolist() if isinstance(r, Tensor) else r)] for r in batches]
    if not lists:
        return
    if images.workers == 0:
        for rows in lists:
            yield images[rows]
        return
    # its own generator: a DataLoader otherwise draws its workers' seed from torch's global
    # one, which would shift every later draw of the run (decoding needs no randomness)
    loader = DataLoader(_Decoded(images), batch_sampler=lists, num_workers=images.workers,
                        collate_fn=_stack, pin_memory=pin, prefetch_factor=2,
                        generator=torch.Generator().manual_seed(0))
    try:
        yield from loader
    except UserError as e:  # re-raised by the DataLoader with the worker's traceback in it
        raise UserError(_worker_message(str(e))) from e


def _worker_message(text: str) -> str:
    """A decoding error's own line out of the text a DataLoader worker's exception carries."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else text
    return last.split("UserError: ", 1)[-1]


def ranges(n: int, batch_size: int) -> list[range]:
    """Consecutive row ranges of at most batch_size covering 0..n-1."""
    return [range(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def select(images: Tensor | ImageFiles, rows: Tensor) -> Tensor | ImageFiles:
    """images[rows], still undecoded for ImageFiles."""
    return images.take(rows) if isinstance(images, ImageFiles) else images[rows]


def concat(parts: Sequence[Tensor | ImageFiles]) -> Tensor | ImageFiles:
    if any(isinstance(p, ImageFiles) for p in parts):
        return ImageFiles.concat(parts)
    return torch.cat(list(parts))


def reader_of(images: Tensor | ImageFiles) -> dict[str, object]:
    """The record's note of which path a run read its images by."""
    if not isinstance(images, ImageFiles):
        return {"path": "memory"}
    return {"path": "stream", "workers": images.workers, "decoded_to": images.side}
