"""Faults a new user meets, each refused or reported before it costs a training run or a
wrong number (the bad values of the settings are in test_bad_input.py): a plugin's Config without
defaults, method_cfg of a method not in the run, a forgotten entry point, non-finite features,
the dry run's method hyper-parameters, and what a record and piped output look like."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from test_cli import records, run
from test_train import make

from crlbench import cli
from crlbench.runner import NonFiniteFeatures, check_finite_features
from crlbench.store import write_record
from crlbench.train import train

NO_DEFAULT = """
from dataclasses import dataclass
from crlbench.methods.raw import Raw

class NoDefault(Raw):
    '''Raw pixels, with a hyper-parameter that has no default (a plugin author's slip).'''
    name = "nodefault"

    @dataclass
    class Config:
        margin: float
"""

NAN_FEATURES = """
from crlbench.methods.raw import Raw

class NanFeatures(Raw):
    '''Raw pixels, with the first image of each embedding batch NaN (a broken model).'''
    name = "nanfeatures"

    def features(self, x):
        out = super().features(x).clone()
        out[0] = float("nan")
        return out
"""


def _one_error_line(capsys) -> str:
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line


def test_a_config_field_without_default_is_refused_before_any_run(plugin_dir, tiny, tmp_path,
                                                                  capsys):
    plugin_dir("fake-nodefault", {"nodefault": "fake_nodefault:NoDefault"},
               {"fake_nodefault": NO_DEFAULT})
    assert run("suite=quickstart", *tiny, "method=nodefault") == 2
    line = _one_error_line(capsys)
    assert "method_cfg.nodefault: margin has no value" in line
    assert "method_cfg.nodefault.margin=VALUE" in line
    assert not (tmp_path / "results").exists()
    # given a value, it runs
    assert run("suite=quickstart", *tiny, "method=nodefault", "seeds=[0]",
               "method_cfg.nodefault.margin=0.5") == 0


def test_method_cfg_of_a_method_not_in_the_run_is_a_warning_naming_the_run(tiny, capsys):
    assert run("suite=quickstart", *tiny, "--dry-run", "method_cfg.cc.temperature=0.3") == 0
    err = capsys.readouterr().err
    assert ("warning: method_cfg.cc is set but cc is not among this run's methods "
            "(raw, simclr); it has no effect") in err


def test_an_unknown_method_says_how_a_plugin_registers(tiny, capsys):
    assert run("suite=quickstart", *tiny, "method=my_loss") == 2
    line = _one_error_line(capsys)
    assert "unknown method 'my_loss'" in line
    assert "entry point group crlbench.methods" in line and "reinstall" in line


def test_the_dry_run_shows_every_methods_resolved_hyper_parameters(tiny, capsys):
    assert run("suite=quickstart", *tiny, "--dry-run", "method_cfg.simclr.proj_dim=64") == 0
    out = capsys.readouterr().out
    section = out[out.index("method_cfg:"):out.index("sweep:")]
    assert "raw: {}" in section
    assert "temperature: 0.5" in section and "proj_dim: 64" in section


def test_non_finite_features_fail_the_run_naming_the_bad_rows(plugin_dir, tiny, capsys):
    plugin_dir("fake-nan", {"nanfeatures": "fake_nan:NanFeatures"}, {"fake_nan": NAN_FEATURES})
    assert run("suite=quickstart", *tiny, "method=nanfeatures", "seeds=[0]") == 1
    store = next(Path(a.split("=", 1)[1]) for a in tiny if a.startswith("results.dir="))
    (record,) = records(store)
    assert record["status"] == "failed" and record["error"]["type"] == "NonFiniteFeatures"
    assert record["error"]["message"].startswith("2 of 1437 train feature rows are not finite")
    assert record["metrics"] == {}


def test_check_finite_features_counts_rows_not_values():
    feats = torch.zeros(10, 4)
    check_finite_features("test", feats)
    feats[2, :] = float("inf")
    feats[7, 1] = float("nan")
    with pytest.raises(NonFiniteFeatures, match="^2 of 10 test feature rows"):
        check_finite_features("test", feats)


def test_a_run_resumed_after_its_last_epoch_reports_no_speed(tmp_path: Path):
    method, setup = make(epochs=2, tmp=tmp_path)
    assert train(method, setup).samples_per_s > 0
    again, setup = make(epochs=2, tmp=tmp_path)
    result = train(again, setup)  # the checkpoint holds both epochs: nothing left to train
    assert result.resumed_from_epoch == 2 and result.samples_per_s is None


def test_records_are_readable_like_other_output_files(tmp_path: Path):
    path = tmp_path / "r.json"
    write_record(path, {"status": "ok"})
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_piped_output_is_not_wrapped_at_80_columns(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert not cli.sys.stdout.isatty()
    assert cli._console().width == cli.PIPED_WIDTH
    assert cli.main(["table", "suite=fashion_cpu", "metric=knn200_acc", "--format",
                     "markdown"]) == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if x.startswith("From 14 records")]
    assert "crlbench 0.1.0" in line  # the provenance line, whole
