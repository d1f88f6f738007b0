"""The metrics built from the one {channel: prefix} map: each channel's promise and live accepted
error under the names deploy/prometheus and Grafana read."""

import math

from prometheus_client import CollectorRegistry

from model.calibration import CHANNELS
from service.metrics import CHANNEL_PREFIXES, Metrics
from service.review.live import AcceptedError


def sample(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    assert value is not None, name
    return value


def test_each_channels_promise_and_live_error_have_their_gauges():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    assert set(CHANNEL_PREFIXES) == set(CHANNELS)
    metrics.publish_model("v1", 0.3, 0.02, 0.01, {"file": 0.002, "drawn": 0.004})
    assert (sample(registry, "bnn_accepted_error_target"), sample(registry, "bnn_drawn_accepted_error_target")) == \
        (0.002, 0.004)
    metrics.publish_model("v1", 0.3, None, 0.01, {"file": 0.002})  # a channel without a record: NaN
    assert math.isnan(sample(registry, "bnn_drawn_accepted_error_target"))
    metrics.publish_accepted_errors({"file": AcceptedError.of(1, 40), "drawn": AcceptedError.of(0, 0)})
    file, drawn = AcceptedError.of(1, 40), AcceptedError.of(0, 0)
    assert [sample(registry, f"bnn_audited_accepted_{name}") for name in
            ("labels", "wrong", "error_ratio", "error_ratio_lower", "error_ratio_upper")] == \
        [40, 1, 1 / 40, file.lower, file.upper]
    assert (sample(registry, "bnn_drawn_audited_accepted_labels"), sample(registry, "bnn_drawn_audited_accepted_wrong"),
            sample(registry, "bnn_drawn_audited_accepted_error_ratio_upper")) == (0, 0, drawn.upper)
    assert math.isnan(sample(registry, "bnn_drawn_audited_accepted_error_ratio"))  # before the first label
