"""Fitting a channel's refer threshold on its labelled audits (a uniform sample of what was really
sent; ``model/reviewed.py`` reads them) instead of the validation mix: the same fixed-sequence
test (``model/fitting/guarantee.py``), the temperature and reason rule kept from the channel's validation
record. What ``python -m model.calibrate --reviewed`` files as fitted on ``reviewed``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import torch

from model.calibration import Calibration
from model.checkpoint import as_served
from model.fitting.guarantee import CalibrationError, guarantee_threshold, min_trials
from model.fitting.validation import CalibrationRequest, ChannelData
from model.network import BayesianNet
from model.precision import Precision
from model.reviewed import Reviewed
from model.scoring import predict_images


class TooFewAudits(CalibrationError):
    """Fewer labelled audits than even zero errors could certify alpha with."""

    def __init__(self, have: int, need: int, alpha: float, delta: float, alongside: bool = False):
        self.have, self.need = have, need
        if alongside:  # fitted with the validation part: any audit would do
            super().__init__("no labelled audits")
            return
        super().__init__(f"{have} labelled audits cannot certify accepted error <= {alpha:.3%} at confidence "
                         f"{1 - delta:.0%}: it takes at least {need} (with no error among them), so {need - have} "
                         "more; keep BNN_AUDIT_FRACTION above 0 and label the audits at /review")


def reviewed_calibration(served: BayesianNet, base: Calibration, audits: Reviewed, request: CalibrationRequest,
                         provenance: dict[str, Any], alongside: ChannelData | None = None) -> Calibration:
    """The refer threshold from labelled audits (a uniform sample of the traffic: ``uniform_audits``),
    by the same fixed-sequence test as on validation, with scores recomputed by ``served`` (the
    checkpoint at ``base``'s precision and temperature). An answer is right only when the label is
    its class: an accepted ``not_a_digit`` or ``unreadable`` is an error. The channel, its alpha and the
    reason rule (familiar mass) are ``base``'s. With ``alongside`` (the channel's part of the validation
    mix) the test runs on both together, so the guarantee holds for their union: the traffic's new kinds
    and every kind the validation mix holds, and a channel needs only one audit. Raises TooFewAudits, or
    CalibrationError when no threshold certifies."""
    alpha = request.alphas[base.channel]
    need = 1 if alongside is not None else min_trials(alpha, request.delta)
    if len(audits) < need:
        raise TooFewAudits(len(audits), need, alpha, request.delta, alongside is not None)
    result = predict_images(served, audits.inputs, request.samples)
    classes = result.mean_probs.argmax(-1).numpy()
    correct = np.array([label == str(int(mine)) for label, mine in zip(audits.labels, classes, strict=True)])
    entropy, data = result.entropy.numpy(), f"reviewed audits: {audits.source}"
    if alongside is not None:
        mix = predict_images(served, alongside.split.images, request.samples)
        entropy = np.concatenate([entropy, mix.entropy.numpy()])
        correct = np.concatenate([correct, mix.mean_probs.argmax(-1).numpy() == alongside.split.labels])
        data += f", with {alongside.data}"
        provenance = {**provenance, "validation_items": len(alongside.split)}
    calibration = guarantee_threshold(entropy, correct, alpha, request.delta, request.samples,
                                      data=data, channel=base.channel, precision=base.precision)
    return replace(calibration, temperature=base.temperature, familiar_mass=base.familiar_mass,
                   reason_fit=base.reason_fit, provenance=provenance)


def audit_provenance(reviewed: Reviewed, audits: Reviewed) -> dict[str, Any]:
    """Where a reviewed-audit record's labels came from."""
    days = sorted(audits.labelled_at)
    return {"source": reviewed.source, "export_sha256": reviewed.sha256, "export_items": len(reviewed),
            "audits_used": len(audits), "labelled_from": days[0] if days else None,
            "labelled_to": days[-1] if days else None,
            "audit_fractions": sorted({f for f in audits.audit_fractions if f is not None}),
            "served_models": sorted(set(audits.model_versions)),
            "fitted": datetime.now(UTC).isoformat(timespec="seconds")}


def reviewed_records(net: BayesianNet, bases: dict[str, Calibration], audits: Reviewed,
                     request: CalibrationRequest, provenance: dict[str, Any], seed: int,
                     device: str, alongside: ChannelData | None = None) -> dict[str, Calibration]:
    """One channel's reviewed-audit record for each precision of ``bases`` (that channel's validation
    records: the channel, temperature and reason rule it keeps), each scored from ``seed``; with
    ``alongside``, fitted on the audits and that validation part together."""
    records = {}
    for precision, base in bases.items():
        torch.manual_seed(seed)
        served = as_served(net, base, cast(Precision, precision)).to(device).eval()
        records[precision] = reviewed_calibration(served, base, audits, request, provenance, alongside)
    return records
