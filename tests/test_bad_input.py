"""Every mistake a user can make stops the suite before any run: one line naming what is wrong
and what is valid, exit code 2, and nothing written. Damaged dataset files are found by the
preflight, which reads every dataset a pending run needs in full."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch

from crlbench.cli import main
from crlbench.errors import UserError
from crlbench.loader import load_suite
from crlbench.suite import expand


def _mnist_root(tmp_path: Path, *, truncate: bool = False, corrupt_gz: bool = False) -> Path:
    """MNIST's four IDX files (4 train, 2 test images of 28x28), optionally damaged."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)

    def images(n):
        return struct.pack(">IIII", 0x803, n, 28, 28) + bytes(range(256)) * (n * 784 // 256) \
            + bytes(n * 784 % 256)

    def labels(n):
        return struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n))

    files = {"train-images-idx3-ubyte": images(4), "train-labels-idx1-ubyte": labels(4),
             "t10k-images-idx3-ubyte": images(2), "t10k-labels-idx1-ubyte": labels(2)}
    for name, payload in files.items():
        if truncate and name.startswith("train-images"):
            payload = payload[:-100]
        data = gzip.compress(payload, mtime=0)
        if corrupt_gz and name.startswith("t10k-images"):
            data = data[:20] + bytes([data[20] ^ 0xFF]) + data[21:]
        (raw / f"{name}.gz").write_bytes(data)
    return tmp_path / "data"


BAD_INPUT = [
    (["suite=nope"], "unknown suite 'nope'"),
    (["suite=quickstart", "method=simclr,nope"], "unknown method 'nope'"),
    (["suite=quickstart", "dataset=imagenet"], "unknown dataset 'imagenet'"),
    (["suite=quickstart", "backbone.name=vgg"], "unknown backbone 'vgg'"),
    (["suite=quickstart", "augment.family=fancy"], "unknown augmentation family 'fancy'"),
    (["suite=quickstart", "train.epochz=3"], "unknown config key 'train.epochz'"),
    (["suite=quickstart", "train.epochs=abc"], "'train.epochs' must be an integer"),
    (["suite=quickstart", "train.epochs=0"], "'train.epochs' must be at least 1"),
    (["suite=quickstart", "train.epochs=-3"], "'train.epochs' must be at least 1"),
    (["suite=quickstart", "train.batch_size=5000"],
     "train.batch_size=5000 is larger than the 1437 training images of digits"),
    (["suite=quickstart", "train.batch_size=512", "variant.imbalance=[100]"],
     "larger than the 339 training images of digits at imbalance 100"),
    (["suite=quickstart", "method=cc", "variant.k=[1]"], "'variant.k' values must be at least 2"),
    (["suite=quickstart", "variant.imbalance=[0.5]"], "rho >= 1"),
    (["suite=quickstart", "seeds=[]"], "'seeds' is empty"),
    (["suite=quickstart", "dataset=cifar10", "data.root=/nonexistent"],
     "/nonexistent/cifar-10-batches-py"),
    (["suite=quickstart", "dataset=../../etc", "data.folders={../../etc: /tmp}"],
     "must be letters, digits"),
    (["train.epochs=1"], "crlbench run needs suite=NAME"),
    # evaluation settings, judged before training rather than after it
    (["suite=quickstart", "eval.metrics=[knn,kest]", "eval.kest_min_k=1"],
     "2 <= eval.kest_min_k <= eval.kest_max_k"),
    (["suite=quickstart", "eval.kest_max_k=1"], "kest_max_k=1"),
    (["suite=quickstart", "eval.kest_restarts=0"], "'eval.kest_restarts' must be at least 1"),
    (["suite=quickstart", "eval.retrieval_k=[0,5]"],
     "'eval.retrieval_k' must list values of at least 1"),
    (["suite=quickstart", "eval.metrics=[knn,knn]"], "'eval.metrics' lists an evaluator twice"),
    (["suite=quickstart", "eval.linear.optimizer=adam", "eval.linear.lrs=[]"],
     "'eval.linear.lrs' must list learning rates"),
    (["suite=quickstart", "eval.linear.l2=[]"], "'eval.linear.l2' must list penalties"),
    (["suite=quickstart", "eval.linear.optimizer=lbfgs", "eval.linear.l2=[0.1,-1]"],
     "'eval.linear.l2' must list penalties lambda >= 0"),
    (["suite=quickstart", "eval.linear.optimizer=lbfgs", "eval.linear.max_iter=0"],
     "'eval.linear.max_iter' must be at least 1"),
    (["suite=quickstart", "eval.linear.optimizer=newton"], "valid choices: adam, sgd, lbfgs"),
    # values that used to train as ok, or fail only after training
    (["suite=quickstart", "train.grad_clip=-1"],
     "'train.grad_clip' must be a finite number in (0, inf)"),
    (["suite=quickstart", "train.min_lr_ratio=nan"],
     "'train.min_lr_ratio' must be a finite number in [0, 1], got nan"),
    (["suite=quickstart", "train.warmup_epochs=-1"], "'train.warmup_epochs' must be a finite"),
    (["suite=quickstart", "train.optimizer.lr=nan"], "'train.optimizer.lr' must be a finite"),
    (["suite=quickstart", "train.optimizer.momentum=1.5"], "'train.optimizer.momentum'"),
    (["suite=quickstart", "method=simclr", "method_cfg.simclr.temperature=-0.5"],
     "'method_cfg.simclr.temperature' is a softmax temperature and must be positive"),
    (["suite=quickstart", "method=simclr", "method_cfg.simclr.temperature=nan"],
     "'method_cfg.simclr.temperature' must be a finite number, got nan"),
    (["suite=quickstart", "eval.knn_k=[]"], "'eval.knn_k' must list values of at least 1"),
    (["suite=quickstart", "eval.kmeans_iters=0"], "'eval.kmeans_iters' must be at least 1"),
    (["suite=quickstart", "eval.metrics=[]"], "'eval.metrics' is empty"),
    (["suite=quickstart", "eval.knn_temperature=0"], "'eval.knn_temperature' must be a finite"),
    (["suite=quickstart", "device=tpu"], "'device' is 'tpu'; valid choices: auto, cpu, cuda"),
    (["suite=quickstart", "variant.imbalance=[nan]"], "rho >= 1"),
    (["suite=quickstart", "data.image_size=100000"], "'data.image_size' must be between 4 and"),
]
if not torch.cuda.is_available():
    BAD_INPUT.append((["suite=quickstart", "device=cuda"],
                      "device=cuda asked for, but torch sees no CUDA device"))


@pytest.mark.parametrize(("args", "expected"), BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, expected, tmp_path, capsys):
    store = tmp_path / "results"
    assert main(["run", *args, f"results.dir={store}", "executor=local"]) == 2
    _assert_one_error_line(capsys, expected)
    assert not store.exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["table", "colour=red"], "table filter 'colour=red' is not key=value"),
    (["plot", "kest", "colour=red"], "plot argument 'colour=red' is not key=value"),
    (["table", "results.dir=/nonexistent"], "results store /nonexistent does not exist"),
])
def test_bad_arguments_of_the_reading_commands_are_one_line_exit_2(args, expected, capsys):
    assert main(args) == 2
    _assert_one_error_line(capsys, expected)


def _assert_one_error_line(capsys, expected: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.startswith("crlbench: error: ") and expected in err, err
    assert len(err.splitlines()) == 1


def test_yaml_syntax_error_names_line_and_column(tmp_path, capsys):
    suite = tmp_path / "broken.yaml"
    suite.write_text("method: [simclr\ntrain:\n  epochs: 2\n")
    assert main(["run", f"suite={suite}", f"results.dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert "YAML syntax error at line" in err and "column" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("damage", "expected"), [
    ({"truncate": True}, "bytes"),
    ({"corrupt_gz": True}, "cannot read"),
])
def test_damaged_dataset_files_stop_the_suite_before_anything_runs(
        tmp_path, capsys, damage, expected):
    root = _mnist_root(tmp_path, **damage)
    store = tmp_path / "results"
    code = main(["run", "suite=quickstart", "dataset=mnist", f"data.root={root}",
                 "train.batch_size=2", "executor=local", f"results.dir={store}"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "dataset mnist" in err and expected in err and len(err.splitlines()) == 1
    assert not store.exists()


def test_undamaged_small_dataset_passes_the_same_checks(tmp_path, tiny, capsys):
    root = _mnist_root(tmp_path)
    code = main(["run", "suite=quickstart", *tiny, "dataset=mnist", f"data.root={root}",
                 "train.batch_size=2", "method=raw", "seeds=[0]", "eval.knn_k=[1]",
                 "eval.metrics=[knn]"])
    assert code == 0


def test_preflight_judges_each_run_by_its_own_batch_size():
    from crlbench.preflight import preflight

    sweep = "sweep={train.batch_size: [64, 128]}"
    preflight(expand(load_suite("quickstart", ["train.batch_size=4096", sweep])))
    with pytest.raises(UserError, match="train.batch_size=4096 is larger than the 1437"):
        preflight(expand(load_suite("quickstart", ["sweep={train.batch_size: [64, 4096]}"])))


def test_an_empty_results_dir_and_a_huge_grid_are_refused_before_expanding(tmp_path, capsys,
                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "suite=quickstart", "executor=local", "results.dir="]) == 2
    _assert_one_error_line(capsys, "'results.dir' is empty")
    seeds = "seeds=[" + ",".join(str(i) for i in range(1000)) + "]"
    lrs = "sweep={train.optimizer.lr: [" + ",".join(f"{(i + 1) / 1000:g}" for i in range(101))
    assert main(["run", "suite=quickstart", "executor=local", seeds, lrs + "]}",
                 f"results.dir={tmp_path / 'results'}"]) == 2
    _assert_one_error_line(capsys, "runs (methods x datasets x seeds x sweep x variants), "
                                   "more than 100,000; split it into several suites")
    assert list(tmp_path.iterdir()) == []  # nothing written, in the current folder either


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path, capsys):
    """Nine levels of nine aliases are 9^9 values once copied; the loader stops at its bound."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert main(["run", f"suite={bomb}", f"results.dir={tmp_path / 'results'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "expands to more than 100,000 values (YAML aliases" in err and "\n" not in err
    assert main(["run", "suite=quickstart", "--dry-run",
                 "seeds=" + "[" + ", ".join(["0"] * 100_001) + "]"]) == 2
    assert "expands to more than 100,000 values" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
