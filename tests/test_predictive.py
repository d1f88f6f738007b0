import copy
import math

import torch

from model.network import PRESETS, BayesianNet, NetConfig
from model.predictive import _images_per_pass, entropy, predictive, summarize


def test_uniform_probabilities_have_entropy_log_10():
    logits = torch.zeros(5, 3, 10)
    result = summarize(logits)
    assert torch.allclose(result.entropy, torch.full((3,), math.log(10)))
    assert torch.allclose(result.mean_probs, torch.full((3, 10), 0.1))


def test_identical_samples_have_zero_mutual_information():
    logits = torch.randn(1, 4, 10).expand(7, 4, 10)
    result = summarize(logits)
    assert torch.allclose(result.mutual_information, torch.zeros(4), atol=1e-6)
    assert torch.allclose(result.entropy, result.expected_entropy, atol=1e-6)


def test_disagreeing_confident_samples_are_epistemic():
    logits = torch.full((2, 1, 10), -50.0)
    logits[0, 0, 3] = 50.0
    logits[1, 0, 7] = 50.0
    result = summarize(logits)
    assert math.isclose(result.entropy.item(), math.log(2), rel_tol=1e-5)
    assert result.expected_entropy.item() < 1e-6
    assert math.isclose(result.mutual_information.item(), math.log(2), rel_tol=1e-5)


def test_entropy_handles_zeros():
    assert entropy(torch.tensor([1.0, 0.0, 0.0])).item() == 0.0


def test_predictive_shapes_and_sample_axis_first():
    torch.manual_seed(0)
    net = BayesianNet(PRESETS["head"])
    images = torch.rand(3, 1, 28, 28)
    assert net(images, samples=5).shape == (5, 3, 10)
    result = predictive(net, images, samples=8)
    assert result.mean_probs.shape == (3, 10)
    assert torch.allclose(result.mean_probs.sum(-1), torch.ones(3))
    assert result.entropy.shape == result.mutual_information.shape == (3,)


def test_fully_variational_and_mlp_presets_run():
    for config in (PRESETS["full"], PRESETS["mlp"]):
        net = BayesianNet(config)
        assert net(torch.rand(2, 1, 28, 28), samples=3).shape == (3, 2, 10)


def test_chunked_predictive_matches_each_image_alone():
    """More images than one pass takes: every image keeps its own samples across the passes."""
    torch.manual_seed(0)
    net = BayesianNet(NetConfig(conv_blocks=(), hidden=(16,), init_rho=-3.0))  # sigma 0.05: the samples disagree
    images = torch.rand(40, 1, 28, 28) * torch.linspace(0.2, 3.0, 40)[:, None, None, None]
    assert _images_per_pass(net, 1000) == 4  # ten passes
    chunked = predictive(net, images, samples=1000)
    alone = torch.cat([predictive(net, images[i : i + 1], samples=1000).mean_probs for i in range(40)])
    assert chunked.mutual_information.min() > 0.005  # not a deterministic net
    assert (chunked.mean_probs - chunked.mean_probs.roll(1, 0)).abs().max() > 0.25  # a shift by one image would show
    assert (chunked.mean_probs - alone).abs().max() < 0.08  # Monte Carlo noise at N = 1000 (measured 0.03)


def test_channels_last_trunk_gives_the_same_features_as_the_default_layout():
    net = BayesianNet(PRESETS["head"]).eval()
    conv = net.trunk[2]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.rand(5, 1, 28, 28)
    reference = copy.deepcopy(net.trunk).to(memory_format=torch.contiguous_format)
    assert not reference[2].weight.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(net.trunk(images).flatten(1), reference(images).flatten(1), rtol=1e-5, atol=1e-5)
