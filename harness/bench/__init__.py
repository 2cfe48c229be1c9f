"""`crlbench bench`: the harness's speed, measured in one process and written to one JSON.

(a) training images/s of `Stepper` steps fed from uint8 images on the device, eager and
compiled, with and without augmentation (`throughput`); (b) the same step fed by torchvision
PIL transforms in a DataLoader, the peer baseline (`baseline`); (c) the time of each evaluator
on synthetic features of several sizes (`evalcost`); (d) a run's fixed cost: dataset load,
model build, first step (`fixedcost`). `targets` judges the speed targets, `report` prints
the tables and writes the JSON, `run` puts them together.
"""

from __future__ import annotations

from crlbench.bench.config import BenchConfig, load_bench_config
from crlbench.bench.run import run_bench

__all__ = ["BenchConfig", "load_bench_config", "run_bench"]
