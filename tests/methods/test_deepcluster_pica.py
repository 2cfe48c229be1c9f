"""DeepCluster and PICA: the protocol, the papers' definitions on hand-computed cases, training."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from crlbench.augment import Augmenter
from crlbench.backbones import TinyConvNet
from crlbench.config import TrainConfig
from crlbench.methods.deepcluster import DeepCluster, balanced_weights, pca_whiten
from crlbench.methods.losses import cluster_mass_entropy
from crlbench.methods.pica import PICA, balance_regulariser, partition_uncertainty_loss
from crlbench.preprocess import Normalizer, channel_stats
from crlbench.protocol import Batch, EpochLoader
from crlbench.testing import check_method, make_context
from crlbench.train import TrainSetup, train

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")


def context(n=40, k=4, seed=0, channels=3):
    return make_context(num_classes=k, dataset_size=n, seed=seed, channels=channels)


def build(cls, n=40, k=4, seed=0, **overrides):
    torch.manual_seed(0)
    cfg = dataclasses.replace(cls.Config(), **overrides)
    return cls(TinyConvNet(3, 8), context(n, k, seed), cfg)


def grouped_images(sizes=(4, 8, 12, 16), seed=0):
    """One random 8x8 pattern per group, repeated (exactly) for each member, in shuffled order:
    the features form len(sizes) distinct points, so k-means with K = groups is unambiguous."""
    gen = torch.Generator().manual_seed(seed)
    patterns = torch.randn(len(sizes), 3, 8, 8, generator=gen)
    groups = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    groups = groups[torch.randperm(len(groups), generator=gen)]
    return patterns[groups], groups


def loader_of(images):
    return EpochLoader(images, lambda x: x, batch_size=16, device=CPU)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("cls", [DeepCluster, PICA])
def test_check_method_with_the_paper_defaults(cls, channels):
    check_method(cls, channels=channels, data_parallel=False)


def test_summaries_name_the_papers():
    assert DeepCluster.summary().startswith("DeepCluster (Caron et al. 2018): ")
    assert PICA.summary().startswith("PICA (Huang et al. 2020): ")
    assert DeepCluster.num_views == 1 and PICA.num_views == 2


def test_paper_defaults():
    dc = DeepCluster.Config()
    assert (dc.pca_dim, dc.overcluster, dc.kmeans_iters, dc.kmeans_restarts) == (256, 1, 20, 1)
    assert (dc.init_std, dc.whiten, dc.reassign_epochs) == (0.01, True, 1)
    assert PICA.Config().entropy_weight == 2.0


# DeepCluster -----------------------------------------------------------------------------------

def test_pca_whiten_matches_sklearn_whitened_pca():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 10, generator=gen, dtype=torch.float64) * torch.logspace(1, -1, 10)
    x = x @ torch.linalg.qr(torch.randn(10, 10, generator=gen, dtype=torch.float64))[0]
    z = pca_whiten(x.float(), 4)
    ref = torch.from_numpy(PCA(4, whiten=True).fit_transform(x.numpy())).float()
    assert z.shape == (200, 4)
    # components are defined up to sign
    signs = torch.sign((z * ref).sum(dim=0))
    torch.testing.assert_close(z * signs, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(z.T @ z / 199, torch.eye(4), atol=1e-4, rtol=1e-4)
    plain = pca_whiten(x.float(), 4, whiten=False)
    ref = torch.from_numpy(PCA(4).fit_transform(x.numpy())).float()
    torch.testing.assert_close(plain * signs, ref, atol=1e-4, rtol=1e-4)


def test_pca_whiten_drops_components_without_variance():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, generator=gen) @ torch.randn(3, 20, generator=gen)  # rank 3
    assert pca_whiten(x, 256).shape == (50, 3)


def test_balanced_weights_by_hand_with_an_empty_cluster():
    labels = torch.tensor([0, 0, 0, 1, 3])
    w = balanced_weights(labels, 4)  # counts 3, 1, 0, 1; K' = 3; N = 5
    torch.testing.assert_close(w, torch.tensor([5 / 9, 5 / 3, 0.0, 5 / 3]))
    assert w[labels].mean().item() == pytest.approx(1.0)
    # each non-empty cluster carries the same total weight, as if sampled uniformly over clusters
    totals = torch.zeros(4).index_add_(0, labels, w[labels])
    torch.testing.assert_close(totals, torch.tensor([5 / 3, 5 / 3, 0.0, 5 / 3]))


def test_before_epoch_labels_every_index_with_its_group():
    images, groups = grouped_images()
    method = build(DeepCluster)
    assert (method.pseudo_labels == -1).all()
    method.before_epoch(0, loader_of(images))
    labels = method.pseudo_labels
    assert labels.shape == (40,) and labels.min() >= 0 and labels.max() < 4
    assert adjusted_rand_score(groups.numpy(), labels.numpy()) == 1.0
    # inverse-size weights: average 1 over the dataset, 40 / (4 * size) per group
    w = method.cluster_weights[labels]
    assert w.mean().item() == pytest.approx(1.0)
    sizes = torch.bincount(groups)[groups].float()
    torch.testing.assert_close(w, 40 / (4 * sizes))


def test_before_epoch_embeds_in_eval_mode_and_keeps_train_mode():
    images, _ = grouped_images()
    method = build(DeepCluster)
    method.train()
    bn = method.backbone[1]
    stats = bn.running_mean.clone()
    method.before_epoch(0, loader_of(images))
    assert method.training and method.backbone.training
    assert torch.equal(bn.running_mean, stats)  # eval mode: BN statistics untouched


def test_overclustering_widens_the_head_and_handles_empty_clusters():
    images, _ = grouped_images()  # 4 distinct points, 8 clusters: some stay empty
    method = build(DeepCluster, overcluster=2)
    method.before_epoch(0, loader_of(images))
    assert method.cluster_logits(torch.randn(3, 32)).shape == (3, 8)
    w = method.cluster_weights
    empty = torch.bincount(method.pseudo_labels, minlength=8) == 0
    assert empty.any() and (w[empty] == 0).all()
    assert w[method.pseudo_labels].mean().item() == pytest.approx(1.0)
    out = method.loss([images[:8]], Batch(indices=torch.arange(8)))
    assert torch.isfinite(out["loss"])


def test_classifier_is_reinitialised_every_epoch_reproducibly():
    images, _ = grouped_images()
    method = build(DeepCluster)
    initial = method.classifier.weight.detach().clone()
    method.before_epoch(0, loader_of(images))
    first = method.classifier.weight.detach().clone()
    assert not torch.equal(first, initial)
    assert first.std().item() == pytest.approx(0.01, rel=0.3)
    # train the classifier a little, then the next epoch starts it afresh
    opt = torch.optim.SGD(method.parameters(), lr=1.0)
    method.loss([images[:16]], Batch(indices=torch.arange(16)))["loss"].backward()
    opt.step()
    assert (method.classifier.bias != 0).any()
    trained = method.classifier.weight.detach().clone()
    method.before_epoch(1, loader_of(images))
    second = method.classifier.weight.detach()
    assert not torch.equal(second, first) and not torch.equal(second, trained)
    assert (method.classifier.bias == 0).all()
    # the same seed and epoch give the same initialisation (and clusters)
    again = build(DeepCluster)
    again.before_epoch(0, loader_of(images))
    assert torch.equal(again.classifier.weight, first)
    other = build(DeepCluster, seed=1)
    other.before_epoch(0, loader_of(images))
    assert not torch.equal(other.classifier.weight, first)


def test_reassign_epochs_keeps_labels_and_classifier_between_clusterings():
    images, _ = grouped_images()
    method = build(DeepCluster, reassign_epochs=2)
    method.before_epoch(1, loader_of(images))  # nothing assigned yet: clusters anyway
    assert (method.pseudo_labels >= 0).all()
    method.before_epoch(2, loader_of(images))
    labels, weight = method.pseudo_labels.clone(), method.classifier.weight.detach().clone()
    method.before_epoch(3, loader_of(images))
    assert torch.equal(method.pseudo_labels, labels)
    assert torch.equal(method.classifier.weight, weight)
    method.before_epoch(4, loader_of(images))
    assert not torch.equal(method.classifier.weight, weight)


def test_loss_is_the_inverse_size_weighted_cross_entropy():
    images, groups = grouped_images()
    method = build(DeepCluster)
    method.before_epoch(0, loader_of(images))
    # give the classifier something to say, so that the loss is not just log K
    torch.nn.init.normal_(method.classifier.weight, std=1.0, generator=torch.Generator()
                          .manual_seed(5))
    idx = torch.tensor([0, 3, 5, 7, 11, 19, 23, 31, 39])
    view = images[idx] + 0.1 * torch.randn(len(idx), 3, 8, 8,
                                           generator=torch.Generator().manual_seed(2))
    out = method.loss([view], Batch(indices=idx))
    logits = method.classifier(method.backbone(view))
    target = method.pseudo_labels[idx]
    sizes = torch.bincount(groups, minlength=4)[groups[idx]].float()
    ce = -logits.log_softmax(dim=1).gather(1, target[:, None]).squeeze(1)
    expected = (40 / (4 * sizes) * ce).mean()
    torch.testing.assert_close(out["loss"], expected)
    torch.testing.assert_close(out["ce"], ce.mean())
    assert not torch.allclose(expected, ce.mean())  # the weights matter on unbalanced groups


def test_state_dict_holds_the_pseudo_labels():
    images, _ = grouped_images()
    method = build(DeepCluster)
    method.before_epoch(0, loader_of(images))
    state = method.state_dict()
    assert torch.equal(state["pseudo_labels"], method.pseudo_labels)
    fresh = build(DeepCluster)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.pseudo_labels, method.pseudo_labels)
    assert torch.equal(fresh.cluster_weights, method.cluster_weights)
    assert (fresh.pseudo_labels >= 0).all()


@pytest.mark.parametrize("cls", [DeepCluster, PICA])
def test_heads_compute_in_float32_under_bf16_autocast(cls):
    method = build(cls)
    images, _ = grouped_images()
    method.before_epoch(0, loader_of(images))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = method.cluster_logits(torch.randn(5, 32))
        out = method.loss([images[:8]] * cls.num_views, Batch(indices=torch.arange(8)))
    assert logits.dtype == torch.float32 and logits.shape == (5, 4)
    assert torch.isfinite(out["loss"])


# PICA ------------------------------------------------------------------------------------------

def test_pui_minimum_for_consistent_balanced_one_hot_assignments():
    k = 4
    onehot = F.one_hot(torch.tensor([0, 1, 2, 3, 3, 2, 1, 0]), k).float()
    minimum = math.log(math.e + k - 1) - 1  # PUI = identity: each row -log(e / (e + K - 1))
    assert partition_uncertainty_loss(onehot, onehot).item() == pytest.approx(minimum)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        p1, p2 = (torch.randn(8, k, generator=gen).mul(3).softmax(dim=1) for _ in range(2))
        assert partition_uncertainty_loss(p1, p2).item() > minimum
    # consistent but with two clusters merged: columns 0 and 1 agree with each other too
    merged = F.one_hot(torch.tensor([0, 0, 2, 3, 3, 2, 0, 0]), k).float()
    assert partition_uncertainty_loss(merged, merged).item() > minimum


def test_pui_by_hand_with_soft_assignments():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    # columns normalised: (2, 1)/sqrt5 and (0, 1); PUI = [[1, c], [c, 1]] with c = 1/sqrt5
    c = 1 / math.sqrt(5)
    expected = math.log(1 + math.exp(c - 1))
    assert partition_uncertainty_loss(p, p).item() == pytest.approx(expected, rel=1e-6)
    # row i: cluster i of view 1 against every cluster of view 2; swapping views transposes
    q = torch.tensor([[0.2, 0.8], [0.9, 0.1]])
    pui = F.normalize(p, dim=0).T @ F.normalize(q, dim=0)
    assert not torch.allclose(pui, pui.T)
    expected = -(pui.diagonal() - pui.exp().sum(dim=1).log()).mean().item()
    assert partition_uncertainty_loss(p, q).item() == pytest.approx(expected, rel=1e-6)
    swapped = -(pui.diagonal() - pui.exp().sum(dim=0).log()).mean().item()
    assert partition_uncertainty_loss(q, p).item() == pytest.approx(swapped, rel=1e-6)
    assert expected != pytest.approx(swapped)


def test_balance_regulariser_collapsed_and_balanced():
    k = 4
    collapsed = torch.zeros(6, k)
    collapsed[:, 0] = 1
    assert balance_regulariser(collapsed).item() == pytest.approx(math.log(k))
    balanced = F.one_hot(torch.arange(8) % k, k).float()
    assert balance_regulariser(balanced).item() == pytest.approx(0.0, abs=1e-6)
    # near collapse, gradient descent on the logits moves mass to the other clusters
    logits = torch.zeros(6, k)
    logits[:, 0] = 3.0
    logits.requires_grad_(True)
    reg = balance_regulariser(logits.softmax(dim=1))
    reg.backward()
    assert (logits.grad[:, 0] > 0).all() and (logits.grad[:, 1:] < 0).all()
    with torch.no_grad():
        stepped = balance_regulariser((logits - logits.grad).softmax(dim=1))
    assert stepped < reg


def test_pica_loss_is_the_pure_function_of_the_head_outputs():
    method = build(PICA)
    gen = torch.Generator().manual_seed(1)
    views = [torch.randn(8, 3, 8, 8, generator=gen) for _ in range(2)]
    out = method.loss(views, Batch(indices=torch.arange(8)))
    p1, p2 = (method.head(method.backbone(v)).softmax(dim=1) for v in views)
    pui = partition_uncertainty_loss(p1, p2)
    balance = math.log(4) - cluster_mass_entropy(p1)
    torch.testing.assert_close(out["loss"], pui + 2.0 * balance)
    torch.testing.assert_close(out["pui"], pui)
    torch.testing.assert_close(out["balance"], balance)
    assert isinstance(method.head, torch.nn.Linear)
    mlp_head = build(PICA, head_hidden_dim=16)
    assert mlp_head.cluster_logits(torch.randn(5, 32)).shape == (5, 4)


# Training --------------------------------------------------------------------------------------

def make(cls, n=64, epochs=4, seed=3, **overrides):
    """A tiny run on four 8x8 patterns with pixel noise, views cropped to at least 60%: data on
    which a few steps can learn something (SGD on the structureless images of test_train.py
    hardly moves these losses)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    patterns = torch.randint(0, 256, (4, 1, 8, 8), generator=gen).float()
    noisy = patterns[torch.arange(n) % 4] + 20 * torch.randn(n, 1, 8, 8, generator=gen)
    images = noisy.clamp(0, 255).to(torch.uint8)
    cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig),
                          {"epochs": epochs, "batch_size": 16, "warmup_epochs": 0,
                           "min_lr_ratio": 1.0,
                           "optimizer": {"name": "adam", "lr": 0.01, "lr_scaling": "none"}})
    ctx = make_context(dataset_size=n, steps_per_epoch=n // 16, epochs=epochs, seed=seed)
    method = cls(TinyConvNet(1, 8), ctx, dataclasses.replace(cls.Config(), **overrides))
    setup = TrainSetup(images=images, seed=seed, cfg=cfg, device=CPU,
                       augment=Augmenter("crop", 8, {"crop_min": 0.6, "flip_p": 0.0}),
                       prepare=Normalizer(*channel_stats(images), CPU))
    return method, setup


def same_state(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_pica_training_lowers_the_loss_and_is_deterministic():
    method, setup = make(PICA, epochs=6)
    history = train(method, setup).history
    assert history[-1]["loss"] < history[0]["loss"] - 0.2
    again, setup = make(PICA, epochs=6)
    assert [h["loss"] for h in train(again, setup).history] == [h["loss"] for h in history]
    same_state(method, again)


class StepLog(DeepCluster):
    """DeepCluster that records the unweighted cross-entropy of every training step."""

    def loss(self, views, batch):
        out = super().loss(views, batch)
        self.steps.append(out["ce"].item())
        return out


def test_deepcluster_training_fits_each_epochs_labels_and_is_deterministic():
    # Few PCA components, so that k-means finds the four patterns (whitening all 32 dimensions
    # of the tiny net would weigh the noise like the patterns; see the module docstring).
    method, setup = make(StepLog, n=128, epochs=3, pca_dim=4)
    method.steps = []
    history = train(method, setup).history
    assert len(method.steps) == 3 * 8
    for epoch in range(3):
        steps = method.steps[8 * epoch:8 * (epoch + 1)]
        assert steps[0] == pytest.approx(math.log(4), abs=0.05)  # a fresh classifier
        assert sum(steps[-2:]) / 2 < steps[0] - 0.3
    again, setup = make(StepLog, n=128, epochs=3, pca_dim=4)
    again.steps = []
    assert [h["loss"] for h in train(again, setup).history] == [h["loss"] for h in history]
    assert again.steps == method.steps
    same_state(method, again)
