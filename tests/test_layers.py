import math

import pytest
import torch

from model.layers import VariationalConv2d, VariationalLinear, gaussian_kl


def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, sigma, prior = torch.randn(50) * 0.3, torch.rand(50) * 0.2 + 0.05, torch.tensor(0.5)
    closed = gaussian_kl(mu, sigma, prior)
    w = mu + sigma * torch.randn(200_000, 50)
    log_q = torch.distributions.Normal(mu, sigma).log_prob(w).sum(-1)
    log_p = torch.distributions.Normal(0.0, prior).log_prob(w).sum(-1)
    monte_carlo = (log_q - log_p).mean()
    assert abs(closed.item() - monte_carlo.item()) < 0.02 * closed.item()


def test_kl_is_zero_when_posterior_equals_prior():
    sigma = torch.full((10,), 0.3)
    assert gaussian_kl(torch.zeros(10), sigma, torch.tensor(0.3)).item() == 0.0


def test_layer_kl_sums_weight_and_bias():
    layer = VariationalLinear(4, 3, prior_sigma=0.1, init_rho=-3.0)
    expected = gaussian_kl(layer.weight_mu, layer.weight_sigma, layer.prior_sigma) + gaussian_kl(
        layer.bias_mu, layer.bias_sigma, layer.prior_sigma
    )
    assert torch.allclose(layer.kl(), expected)
    assert torch.allclose(layer.weight_sigma, torch.nn.functional.softplus(torch.tensor(-3.0)).expand(3, 4))


def test_local_reparameterization_has_the_weight_sampling_moments():
    torch.manual_seed(0)
    layer = VariationalLinear(6, 2, prior_sigma=1.0, init_rho=-1.0)
    x = torch.randn(1, 6)
    with torch.no_grad():
        draws = layer.forward_samples(x, 100_000)[:, 0]  # [S, 2]
        expected_mean = x @ layer.weight_mu.T + layer.bias_mu
        expected_var = (x**2) @ (layer.weight_sigma**2).T + layer.bias_sigma**2
    assert torch.allclose(draws.mean(0), expected_mean[0], atol=4 * (expected_var[0] / 100_000).sqrt().max().item())
    assert torch.allclose(draws.var(0), expected_var[0], rtol=0.03)


def test_predictive_draws_are_exact_per_image_and_shared_across_images():
    torch.manual_seed(1)
    layer = VariationalLinear(6, 3, prior_sigma=1.0, init_rho=-1.0).eval()
    x = torch.randn(4, 6)
    samples = 50_000
    with torch.no_grad():
        draws = layer.forward_samples(x, samples)  # [S, 4, 3]
        mean, variance = layer.moments(x)
    standardized = (draws - mean) / variance.sqrt()  # [S, 4, 3]
    for image in range(4):  # every image: S independent draws of its own N(mean, variance)
        assert torch.allclose(draws[:, image].mean(0), mean[image],
                              atol=5 * (variance[image] / samples).sqrt().max().item())
        assert torch.allclose(draws[:, image].var(0), variance[image], rtol=0.03)
        lag_correlation = (standardized[1:, image] * standardized[:-1, image]).mean().item()
        assert abs(lag_correlation) < 5 / math.sqrt(samples)
    # one standard-normal draw per sample serves every image of the call
    torch.testing.assert_close(standardized[:, 0], standardized[:, 3], rtol=1e-4, atol=1e-4)


def test_training_draws_are_independent_across_examples():
    torch.manual_seed(2)
    layer = VariationalLinear(6, 3, prior_sigma=1.0, init_rho=-1.0).train()
    x = torch.randn(2, 6)
    with torch.no_grad():
        draws = layer.forward_samples(x, 20_000)  # [S, 2, 3]
        mean, variance = layer.moments(x)
    standardized = (draws - mean) / variance.sqrt()
    correlation = (standardized[:, 0] * standardized[:, 1]).mean().item()
    assert abs(correlation) < 5 / math.sqrt(20_000 * 3)


def _weight_sampling_reference(conv: VariationalConv2d, x: torch.Tensor, draws: int) -> torch.Tensor:
    """A plain loop: draw a weight, convolve. [draws, O, H, W] for a single image x [1, C, H, W]."""
    outputs = []
    for _ in range(draws):
        weight, bias = conv.sample_weights()
        outputs.append(torch.nn.functional.conv2d(x, weight, bias, padding=conv.padding)[0])
    return torch.stack(outputs)


def _assert_same_moments(draws: torch.Tensor, reference: torch.Tensor) -> None:
    assert draws.shape == reference.shape
    assert torch.allclose(draws.mean(0), reference.mean(0), atol=0.1)
    assert torch.allclose(draws.std(0), reference.std(0), rtol=0.1)


def test_flipout_marginal_per_example_matches_weight_sampling():
    torch.manual_seed(1)
    conv = VariationalConv2d(2, 3, 3, padding=1, prior_sigma=1.0, init_rho=-1.5)
    x = torch.randn(1, 2, 5, 5)
    with torch.no_grad():
        reference = _weight_sampling_reference(conv, x, 4000)
        # the first example of 4000 separate calls, each call a fresh perturbation and fresh signs
        flipout = torch.stack([conv(torch.cat([x, torch.randn(3, 2, 5, 5)]))[0] for _ in range(4000)])
    _assert_same_moments(flipout, reference)


def test_per_sample_convolution_matches_weight_sampling():
    torch.manual_seed(2)
    conv = VariationalConv2d(2, 3, 3, padding=1, prior_sigma=1.0, init_rho=-1.5)
    x = torch.randn(1, 2, 5, 5)
    with torch.no_grad():
        reference = _weight_sampling_reference(conv, x, 4000)
        vectorized = conv.forward_per_sample(x.unsqueeze(0).expand(4000, -1, -1, -1, -1))[:, 0]  # [S, 3, 5, 5]
    _assert_same_moments(vectorized, reference)
    # independent draws: two images in one call see the same weights for the same sample index
    pair = conv.forward_per_sample(torch.cat([x, x]).unsqueeze(0).expand(3, -1, -1, -1, -1))
    assert torch.allclose(pair[:, 0], pair[:, 1], atol=1e-5)


def test_sigma_is_softplus_of_rho_and_positive():
    layer = VariationalLinear(3, 3, prior_sigma=0.1, init_rho=-20.0)
    assert (layer.weight_sigma > 0).all()
    assert math.isclose(layer.bias_sigma[0].item(), math.log1p(math.exp(-20.0)), rel_tol=1e-3)


def test_variances_are_cached_in_eval_and_fresh_in_training():
    layer = VariationalLinear(3, 2, prior_sigma=0.1, init_rho=-3.0)
    layer.eval()
    cached = layer.variances()[0]
    assert layer.variances()[0] is cached  # no softplus per call
    with torch.no_grad():
        layer.weight_rho.fill_(-1.0)
    layer.train()
    fresh = layer.variances()[0]
    assert torch.allclose(fresh, torch.nn.functional.softplus(torch.tensor(-1.0)) ** 2 * torch.ones(2, 3))
    layer.eval()
    layer.load_state_dict({**layer.state_dict(), "weight_rho": torch.full((2, 3), -2.0)})
    assert torch.allclose(layer.variances()[0],
                          torch.nn.functional.softplus(torch.tensor(-2.0)) ** 2 * torch.ones(2, 3))


def test_repeated_eval_calls_keep_the_cache():
    layer = VariationalLinear(3, 2, prior_sigma=0.1, init_rho=-3.0).eval()
    cached = layer.variances()[0]
    layer.eval()
    assert layer.variances()[0] is cached


def test_a_layer_anchored_to_its_posterior_pays_for_leaving_it_most_where_it_was_sure():
    """Variational continual learning's prior: the KL is zero at the anchor, and moving a weight the posterior
    was sure of (small sigma) costs more than moving one it was unsure of, by (shift / sigma)^2 / 2."""
    torch.manual_seed(0)
    layer = VariationalLinear(2, 1, prior_sigma=0.1, init_rho=-3.0)
    with torch.no_grad():
        layer.weight_rho.copy_(torch.tensor([[-6.0, 0.0]]))  # sure of the first weight, unsure of the second
    unanchored = layer.kl().item()
    layer.anchor_to_posterior()
    assert layer.kl().item() == 0.0 and unanchored > 0
    costs = []
    for index in (0, 1):
        with torch.no_grad():
            layer.weight_mu[0, index] += 0.05
        costs.append(layer.kl().item())
        with torch.no_grad():
            layer.weight_mu[0, index] -= 0.05
    sigmas = layer.weight_sigma[0].detach()
    assert costs == [pytest.approx(0.5 * (0.05 / sigma.item()) ** 2, rel=1e-4) for sigma in sigmas]
    assert costs[0] > 100 * costs[1]
    assert torch.allclose(gaussian_kl(torch.ones(3), torch.full((3,), 0.2), torch.tensor(0.2), torch.ones(3)),
                          torch.tensor(0.0))
