"""The paper protocols a run can follow and what its record says about them: training on train +
test, a method's own positive pairs for the geometry, a sample of test images for it, what a
method resolved (cluster sizes, queue length), the conventions of every number, and the
shipped suites that mirror a paper's tables."""

from __future__ import annotations

import pytest
import torch

from crlbench.backbones import build_backbone
from crlbench.cli import main
from crlbench.errors import UserError
from crlbench.evaluate import Embeddings
from crlbench.evaluate.conventions import conventions
from crlbench.evaluate.geometry import alignment, uniformity
from crlbench.loader import load_suite
from crlbench.methods.banks import queue_length
from crlbench.optim import LARS
from crlbench.resolve import evaluate_named
from crlbench.store import scan
from crlbench.suite import expand


def test_training_on_train_plus_test_is_recorded_and_changes_the_run_id(tiny, tmp_path):
    run = ["run", "suite=quickstart", *tiny, "method=simclr", "seeds=[0]",
           "eval.metrics=[kmeans]"]
    assert main([*run, "data.train_split=train+test"]) == 0
    (record,) = scan(tmp_path / "results").records
    data = record["data"]
    assert data["train_split"] == "train+test"
    assert data["pretrain_size"] == data["train_size"] + data["test_size"] == 1797
    assert record["conventions"]["trained on"] == "train+test"
    plain = {s.method: s.run_id for s in expand(load_suite("quickstart", tiny[:-1]))}
    both = {s.method: s.run_id for s in expand(load_suite(
        "quickstart", [*tiny[:-1], "data.train_split=train+test"]))}
    assert plain["simclr"] != both["simclr"]
    assert plain["raw"] == both["raw"]  # raw trains nothing: what training sees is moot


@pytest.mark.parametrize(("overrides", "expected"), [
    (["data.train_split=all"], "'data.train_split' is 'all'; valid choices: train, train+test"),
    (["data.train_split=train+test", "variant.imbalance=[10]"],
     "'variant.imbalance' makes the train split long-tailed; training on "
     "data.train_split=train+test would add the balanced test split to it"),
])
def test_bad_train_splits_are_refused_before_any_run(overrides, expected):
    with pytest.raises(UserError, match=expected.replace("+", r"\+")):
        expand(load_suite("quickstart", overrides))


def test_cmc_geometry_is_on_its_own_pairs_of_a_test_sample(tiny, tmp_path):
    assert main(["run", "suite=quickstart", *tiny, "method=cmc", "dataset=digits_rgb",
                 "seeds=[0]", "eval.metrics=[geometry]", "eval.geometry_samples=100"]) == 0
    (record,) = scan(tmp_path / "results").records
    assert record["status"] == "ok", record["error"]
    details = record["eval_details"]["geometry"]
    assert details == {"pairs": "method", "pair_count": 100, "uniformity_points": 100}
    assert "the method's own positive pairs" in record["conventions"]["geometry"]
    assert "of 100 test images" in record["conventions"]["geometry"]
    # normalised L and ab embeddings of one image: alignment in [0, 4], uniformity <= 0
    assert 0 <= record["metrics"]["align"] <= 4 and record["metrics"]["uniform"] <= 0


def test_geometry_of_a_methods_pairs_averages_the_uniformity_of_both_sides():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(30, 8, generator=gen), torch.randn(30, 8, generator=gen)
    emb = Embeddings(train=torch.randn(40, 8, generator=gen), train_labels=torch.zeros(40).long(),
                     test=torch.randn(30, 8, generator=gen), test_labels=torch.zeros(30).long(),
                     num_classes=2, view_pairs=(a, b), pair_source="method",
                     uniformity_sets=[a, b])
    cfg = load_suite(None, ["eval.metrics=[geometry]"]).eval
    result = evaluate_named(emb, cfg, seed=0)
    assert result.metrics["align"] == pytest.approx(alignment(a, b).item())
    assert result.metrics["uniform"] == pytest.approx(
        (uniformity(a).item() + uniformity(b).item()) / 2)
    assert result.details["geometry"]["pairs"] == "method"


def test_a_sample_of_test_images_for_the_geometry_of_augmented_views(tiny, tmp_path):
    assert main(["run", "suite=quickstart", *tiny, "method=simclr", "seeds=[0]",
                 "eval.metrics=[geometry]", "eval.geometry_samples=50"]) == 0
    (record,) = scan(tmp_path / "results").records
    assert record["eval_details"]["geometry"] == {"pairs": "views", "pair_count": 50,
                                                  "uniformity_points": 50}


def test_records_say_what_a_method_resolved(tiny, tmp_path):
    assert main(["run", "suite=quickstart", *tiny, "method=c2bin,moco_v2", "seeds=[0]",
                 "eval.metrics=[heads]", "method_cfg.c2bin.cluster_sizes=[K,3K,64]"]) == 0
    details = {r["method"]: r["method_details"] for r in scan(tmp_path / "results").records}
    assert details["c2bin"] == {"cluster_sizes": [10, 30, 64]}
    # v2's 65536 keys on 1,437 digits in batches of 128: cut to 1437 - 1437 // 11
    assert details["moco_v2"] == {"queue_length": 1437 - 130}


def test_queue_length_is_at_most_the_training_set_less_a_batch():
    assert queue_length(65536, 50_000, 195) == 50_000 - 256  # CIFAR-10 at batch 256
    assert queue_length(4096, 50_000, 195) == 4096
    assert queue_length(4096, 60_000, 234) == 4096  # Fashion-MNIST
    with pytest.raises(ValueError):
        queue_length(0, 100, 1)


def test_conventions_name_only_the_evaluators_that_ran():
    cfg = load_suite("clustering_cpu")
    spec = expand(cfg)[0]
    out = conventions(spec.config, "train", "views")
    assert set(out) == {"features", "trained on", "kNN", "clustering", "k-means"}
    assert out["kNN"] == ("k = 5, 200, cosine similarity to the train features, votes weighted "
                          "exp(s / 0.07)")
    assert out["clustering"].startswith("scored on train+test; ACC by the Hungarian matching, "
                                        "NMI with the arithmetic mean")
    out = conventions(expand(load_suite("quickstart"))[0].config, "train+unlabeled", "views")
    assert out["linear probe"] == (
        "L-BFGS on the full batch (at most 100 iterations) of standardised train features, L2 "
        "penalty lambda from 1e-05, 0.0001, 0.001, 0.01, 0.1 picked on 10% of train held "
        "out, then retrained on all of train")
    assert out["trained on"] == "train+unlabeled"
    adam = expand(load_suite("quickstart", ["eval.linear.optimizer=adam",
                                            "eval.linear.epochs=50"]))[0].config
    assert conventions(adam, "train", "views")["linear probe"] == (
        "adam, 50 epochs on standardised train features, lr from 0.001, 0.003, 0.01, 0.03, "
        "0.1 picked on 10% of train held out, then retrained on all of train")


def test_lars_default_trust_coefficient_is_simclrs():
    assert load_suite(None).train.optimizer.lars_eta == 1e-3
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    w.grad = torch.tensor([0.0, 0.1])
    LARS([w], lr=1.0, momentum=0.0).step()
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0 - 1e-3 * 5 / 0.1 * 0.1]))


def test_the_cmc_loss_study_encoder_is_its_figure_3():
    net, dim = build_backbone("convnet_4x4", channels=3, image_size=64)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    # the Param # column of Fig. 3: 588, 4632, 18480, 18456; output [24, 4, 4]
    assert [sum(p.numel() for p in c.parameters()) for c in convs] == [588, 4632, 18480, 18456]
    assert dim == 384 and net(torch.zeros(2, 3, 64, 64)).shape == (2, 384)
    with pytest.raises(UserError, match="multiple of 16"):
        build_backbone("convnet_4x4", channels=3, image_size=12)


def test_an_image_size_the_backbone_cannot_take_stops_before_any_run(tiny, tmp_path, capsys):
    assert main(["run", "suite=quickstart", *tiny, "backbone.name=convnet_4x4"]) == 2
    assert ("backbone convnet_4x4 halves the image side four times and needs a side that is a "
            "multiple of 16, got 12") in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("value", [0, 1])
def test_geometry_samples_below_two_are_refused(value):
    with pytest.raises(UserError, match="'eval.geometry_samples' must be at least 2"):
        expand(load_suite("quickstart", [f"eval.geometry_samples={value}"]))


# The shipped suites that mirror the papers' tables.

def _cfg(name):
    return load_suite(name)


def test_c2bin_suites_are_tables_5_and_10():
    rep = _cfg("c2bin_representation")  # Table 5
    opt = rep.train.optimizer
    assert (opt.name, opt.lr, opt.lr_scaling, opt.weight_decay, opt.momentum) == \
        ("lars", 0.2, "none", 1e-6, 0.9)
    assert (rep.train.epochs, rep.train.batch_size, rep.train.warmup_epochs,
            rep.train.min_lr_ratio, rep.backbone.name) == (500, 256, 0, 1.0, "resnet18")
    assert rep.method_cfg.c2bin.preset == "representation"
    clu = _cfg("c2bin_clustering")  # Table 10
    opt = clu.train.optimizer
    assert (opt.name, opt.lr, opt.lr_scaling, opt.weight_decay) == ("adam", 3e-4, "none", 0.0)
    assert (clu.train.epochs, clu.train.batch_size, clu.train.warmup_epochs,
            clu.train.min_lr_ratio, clu.backbone.name) == (300, 256, 0, 0.0, "resnet34")
    assert clu.data.train_split == "train+test" and clu.eval.cluster_split == "all"
    sizes = {s.dataset: s.config["method_cfg"]["cluster_sizes"] for s in expand(clu)
             if s.method == "c2bin"}
    assert sizes == {"cifar10": ["K", 40, 160], "cifar20": ["K", 40, 160],
                     "stl10": ["K", 40, 160]}


def test_the_losses_suite_is_the_studys_setup():
    cfg = _cfg("losses")  # sec. 4.1 and Table 1
    opt = cfg.train.optimizer
    assert (opt.name, opt.lr, list(opt.betas), cfg.train.epochs, cfg.train.batch_size) == \
        ("adam", 1e-3, [0.5, 0.999], 100, 128)
    assert (cfg.backbone.name, cfg.data.image_size, list(cfg.dataset)) == \
        ("convnet_4x4", 64, ["stl10"])
    assert cfg.eval.geometry_samples == 1000 and "geometry" in cfg.eval.metrics
    assert sorted(cfg.sweep["method_cfg.cmc.loss"]) == ["nce", "softmax", "spring", "triplet"]


@pytest.mark.parametrize("name", ["clustering", "wrong_k", "imbalance"])
def test_cc_protocol_in_the_clustering_suites(name):
    cfg = _cfg(name)  # CC's CIFAR augmentation and constant Adam 3e-4
    assert (cfg.augment.jitter_strength, cfg.augment.blur_p) == (0.5, 0.0)
    assert (cfg.train.warmup_epochs, cfg.train.min_lr_ratio) == (0, 1.0)
    assert cfg.data.train_split == ("train" if name == "imbalance" else "train+test")


def test_imbalance_suite_reports_the_linear_probe_of_c2bin_fig_4():
    cfg = _cfg("imbalance")
    assert "linear" in cfg.eval.metrics and {"byol", "simclr", "pica", "c2bin"} <= set(cfg.method)
    assert list(cfg.dataset) == ["cifar10", "cifar100"]


@pytest.mark.parametrize("name", ["representation", "fashion", "fashion_cpu",
                                  "c2bin_representation"])
def test_moco_queue_in_cifar_size_suites_is_the_demos_4096(name):
    specs = [s for s in expand(_cfg(name)) if s.method == "moco_v2"]
    assert specs and {s.config["method_cfg"]["queue_size"] for s in specs} == {4096}


def test_representation_suite_peaks_at_the_recipes_lr():
    cfg = _cfg("representation")  # SimSiam / MoCo CIFAR demo: 0.03 per 256, 0.06 at 512
    assert cfg.train.optimizer.lr * cfg.train.batch_size / 256 == pytest.approx(0.06)
    assert cfg.method_cfg.c2bin.preset == "representation"


def test_check_method_checks_presets():
    import dataclasses

    from crlbench.errors import MethodCheckError
    from crlbench.methods.c2bin import C2BIN
    from crlbench.testing import check_method

    class Drifted(C2BIN):
        presets = {**C2BIN.presets, "clustering": {**C2BIN.presets["clustering"],  # noqa: RUF012
                                                   "temperature": 0.7}}

    with pytest.raises(MethodCheckError, match="differ from its default preset 'clustering' "
                                               "in temperature"):
        check_method(Drifted)

    class Unknown(C2BIN):
        presets = {**C2BIN.presets, "extra": {"tau": 1.0}}  # noqa: RUF012

    with pytest.raises(MethodCheckError, match="preset 'extra' sets tau, which Config does not"):
        check_method(Unknown)

    class NoField(C2BIN):
        @dataclasses.dataclass
        class Config:
            temperature: float = 1.0

        presets = {"a": {"temperature": 1.0}}  # noqa: RUF012

    with pytest.raises(MethodCheckError, match="needs a Config field `preset`"):
        check_method(NoField)
    with pytest.raises(MethodCheckError, match="unknown preset 'nope'"):
        check_method(C2BIN, config={"preset": "nope"})
