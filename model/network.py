"""The network: a config dataclass (saved with the weights) and the module it builds.

Three families come out of one config:

* fully variational CNN (``variational_conv=True``): every conv and linear weight is Gaussian;
* variational head (``variational_conv=False``): deterministic conv features, Gaussian
  fully-connected layers. Features are computed once per image and only the head is sampled;
* Bayesian MLP (``conv_blocks=()``): the seed's 784-400-400-10, every weight Gaussian.

``forward(x [B, 1, 28, 28], samples) -> logits [S, B, 10]``: the sample axis comes first.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.data import IMAGE_SIZE
from model.int8_trunk import Int8Trunk
from model.layers import GaussianParameters, VariationalConv2d, VariationalLinear
from model.precision import SERVED, Precision, trunk_precision

NUM_CLASSES = 10
# the second signal, removed (docs/experiments.md); kept readable, off, because the checkpoints the docs
# compare with this checkout's report (head-752d929f3e4f, head-6eb5d47885b8) carry them as false
RETIRED_KEYS = ("feature_density", "reject_class")


@dataclass(frozen=True)
class NetConfig:
    """Architecture. ``conv_blocks``: per block, the channels of its 3x3 convs; a 2x2 max-pool ends each."""

    conv_blocks: tuple[tuple[int, ...], ...] = ((32, 32), (64, 64))
    hidden: tuple[int, ...] = (256,)
    variational_conv: bool = False
    prior_sigma: float = 0.1
    init_rho: float = -6.0
    temperature: float = 1.0  # logits are divided by this (fitted on validation digits after training)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> NetConfig:
        """The config from metadata. The retired second signal's switches are accepted when off."""
        if any(raw.get(key) for key in RETIRED_KEYS):
            raise ValueError(f"a second 'unfamiliar' signal ({', '.join(RETIRED_KEYS)}) is not built by this version")
        values = {k: v for k, v in raw.items() if k not in RETIRED_KEYS}
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown NetConfig keys: {sorted(unknown)}")
        if "conv_blocks" in values:
            values["conv_blocks"] = tuple(tuple(int(c) for c in block) for block in values["conv_blocks"])
        if "hidden" in values:
            values["hidden"] = tuple(int(h) for h in values["hidden"])
        return cls(**values)


PRESETS: dict[str, NetConfig] = {
    "head": NetConfig(),
    "full": NetConfig(variational_conv=True),
    "mlp": NetConfig(conv_blocks=(), hidden=(400, 400)),
}


@dataclass
class _Trunk:
    layers: list[nn.Module] = field(default_factory=list)
    channels: int = 1
    size: int = IMAGE_SIZE


def _build_trunk(config: NetConfig) -> _Trunk:
    trunk = _Trunk()
    for block in config.conv_blocks:
        for out_channels in block:
            if config.variational_conv:
                conv: nn.Module = VariationalConv2d(trunk.channels, out_channels, 3, 1,
                                                    config.prior_sigma, config.init_rho)
            else:
                conv = nn.Conv2d(trunk.channels, out_channels, 3, padding=1)
            trunk.layers += [conv, nn.ReLU(inplace=True)]  # in place: no new feature map to allocate
            trunk.channels = out_channels
        trunk.layers.append(nn.MaxPool2d(2))
        trunk.size //= 2
    return trunk


class BayesianNet(nn.Module):
    def __init__(self, config: NetConfig, precision: Precision = "float32", int8_trunk: Int8Trunk | None = None):
        super().__init__()
        self.config = config
        # the trunk quantized from these weights (model/int8_trunk.py), when the checkpoint has one: what runs
        # the trunk in int8
        self.int8_trunk = int8_trunk
        self.int8_note = ""  # why there is no int8 trunk (set by load_checkpoint), for the messages that refuse int8
        if precision == "int8" and (int8_trunk is None or config.variational_conv):  # (runs_in, before construction)
            raise ValueError("int8 needs a deterministic trunk quantized from these weights (python -m model.quantize)")
        # what the conv trunk runs in (model/precision.py): a property of this loaded net, not of the
        # weights, so never saved; the head always runs in float32
        self.precision: Precision = precision
        trunk = _build_trunk(config)
        self.trunk = nn.Sequential(*trunk.layers)
        widths = [trunk.channels * trunk.size * trunk.size, *config.hidden, NUM_CLASSES]
        self.head = nn.ModuleList(
            VariationalLinear(a, b, config.prior_sigma, config.init_rho) for a, b in itertools.pairwise(widths)
        )
        # Conv weights in channels-last layout: oneDNN's fast path on CPU, the same values.
        # Measured on the 2-core build machine: the trunk 1.5-1.9x faster for inference at 1 to 64
        # images, a training step about 1.15x. Loading a checkpoint copies into this layout, and
        # saving makes tensors contiguous, so the files are unchanged.
        self.trunk.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # (missing from the stubs)

    @property
    def shares_features(self) -> bool:
        """True when everything before the first Gaussian layer is deterministic."""
        return not self.config.variational_conv

    def at_temperature(self, temperature: float) -> BayesianNet:
        """A new net with these weights and precision whose logits are divided by ``temperature``
        (this one is unchanged)."""
        return self._copy(replace(self.config, temperature=temperature), self.precision)

    def runs_in(self, precision: Precision) -> bool:
        """Whether this net can run its trunk in ``precision`` (int8: with a trunk quantized from its weights)."""
        return precision != "int8" or (self.int8_trunk is not None and self.shares_features)

    def served_precisions(self) -> tuple[Precision, ...]:
        """The precisions the service serves that this net can run (int8 once its trunk is quantized)."""
        return tuple(precision for precision in SERVED if self.runs_in(precision))

    def in_precision(self, precision: Precision) -> BayesianNet:
        """A new net with these weights whose trunk runs in ``precision`` (this one is unchanged)."""
        return self._copy(self.config, precision)

    def _copy(self, config: NetConfig, precision: Precision) -> BayesianNet:
        other = BayesianNet(config, precision, self.int8_trunk)
        other.int8_note = self.int8_note
        other.load_state_dict(self.state_dict())
        parameter = next(self.parameters(), None)
        return other.to(parameter.device if parameter is not None else "cpu").train(self.training)

    def forward(self, x: Tensor, samples: int = 1) -> Tensor:
        """``x [B, 1, 28, 28]`` -> logits ``[S, B, 10]``, S = ``samples`` draws from the posterior,
        divided by the temperature; the trunk in ``self.precision``, the head in float32."""
        if self.shares_features:
            features = self.features(x)  # [B, F], once per image
            first: VariationalLinear = self.head[0]  # type: ignore[assignment]
            mean, variance = first.moments(features)  # [B, H] each
            h = first.sample_from_moments(mean, variance, samples)  # [S, B, H]
        else:
            with trunk_precision(self.precision, x.device.type):
                features = self._sampled_trunk(x, samples)  # [S, B, F]
            h = self.head[0](features.float())  # [S, B, H]
        for layer in self.head[1:]:
            h = layer(F.relu(h))
        if self.config.temperature != 1.0:
            h = h / self.config.temperature
        return h  # [S, B, 10]

    def features(self, x: Tensor) -> Tensor:
        """The deterministic trunk's features ``[B, F]`` in float32, computed in ``self.precision``."""
        if self.precision == "int8":
            return self.int8_trunk(x)  # type: ignore[misc]  # (checked in construction)
        with trunk_precision(self.precision, x.device.type):
            return self.trunk(x).flatten(1).float()

    def _sampled_trunk(self, x: Tensor, samples: int) -> Tensor:
        """Variational convolutions: Flipout over the folded batch in training (decorrelated noise,
        cheap gradients); one true weight draw per sample for prediction. -> ``[S, B, F]``."""
        batch = x.shape[0]
        if self.training:
            repeated = x.unsqueeze(0).expand(samples, *x.shape).reshape(samples * batch, *x.shape[1:])
            return self.trunk(repeated).reshape(samples, batch, -1)
        h = x.unsqueeze(0).expand(samples, *x.shape)  # [S, B, 1, 28, 28]
        for layer in self.trunk:
            if isinstance(layer, VariationalConv2d):
                h = layer.forward_per_sample(h)
            else:
                h = layer(h.flatten(0, 1)).unflatten(0, (samples, batch))
        return h.flatten(2)

    def kl(self) -> Tensor:
        """Sum of the closed-form KL of every Gaussian layer, in nats (not scaled)."""
        return torch.stack([m.kl() for m in self.modules() if isinstance(m, GaussianParameters)]).sum()
