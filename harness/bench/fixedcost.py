"""(d) The fixed cost of one run before training settles: the device's initialisation (the
CUDA context; nothing on the CPU), the cold dataset load (read, decode, resize, channel
statistics, placement on the device), the model build (backbone and method moved to the device)
and the first training step (optimiser set-up, augmentation, lazy cuDNN and cuBLAS
initialisation), each timed as a run performs it.

It runs first in the benchmark's process, before anything touches the device, so that the lazy
initialisation is counted here. A process running several runs pays the device's
initialisation once. The step is eager, as a run's is by default; a compiled run adds its
compilation (see the compiled throughput's warm-up time).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from omegaconf import DictConfig

from crlbench.bench.model import build_method, build_stepper, clock
from crlbench.preprocess import Normalizer, channel_stats
from crlbench.resolve import load_dataset


def measure_fixed_cost(cfg: DictConfig, device: torch.device) -> dict[str, Any]:
    start = time.perf_counter()  # not clock(): its synchronisation would initialise CUDA
    torch.zeros(1, device=device)
    ready = clock(device)
    # cold: read from disk, not through a run's DatasetCache
    data = load_dataset(cfg.dataset, root=cfg.data.root, download=cfg.data.download,
                        image_size=cfg.data.image_size, folders=dict(cfg.data.folders),
                        use_unlabeled=cfg.data.use_unlabeled)
    pretrain = data.pretrain_images(cfg.data.use_unlabeled)
    mean, std = channel_stats(data.train_images)
    prepare = Normalizer(mean, std, device)
    images = pretrain.to(device)  # the datasets a run keeps on a GPU all fit there
    loaded = clock(device)

    batch_size = min(cfg.batch_size, len(pretrain))
    method = build_method(cfg, device, channels=data.channels, image_size=data.image_size,
                          dataset_size=len(pretrain), num_classes=data.num_classes,
                          total_steps=1, mean=mean, std=std)
    built = clock(device)

    stepper = build_stepper(cfg, method, images, prepare, device, batch_size=batch_size,
                            image_size=data.image_size, compile=False, total_steps=1)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    idx = torch.arange(batch_size, device=device)
    stepper.step(stepper.views(images[idx], gen), idx, 0)
    stepped = clock(device)
    return {
        "dataset": cfg.dataset, "images": len(pretrain), "image_size": data.image_size,
        "channels": data.channels, "backbone": cfg.backbone, "method": cfg.method,
        "batch_size": batch_size,
        "seconds": {"device_init": ready - start, "data": loaded - ready,
                    "build": built - loaded, "first_step": stepped - built},
        "total_s": stepped - start,
    }
