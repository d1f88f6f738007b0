import math

import numpy as np
import pytest

from model.calibrate import draws_seed
from model.fitting.guarantee import (
    CalibrationError,
    clopper_pearson_upper,
    guarantee_threshold,
    referral_rate_threshold,
)


def test_clopper_pearson_zero_errors_matches_closed_form():
    # With zero errors the one-sided bound is 1 - delta ** (1 / n).
    assert math.isclose(clopper_pearson_upper(0, 1000, 0.05), 1 - 0.05 ** (1 / 1000), rel_tol=1e-9)
    assert clopper_pearson_upper(5, 5, 0.05) == 1.0
    assert clopper_pearson_upper(0, 0, 0.05) == 1.0


def test_guarantee_picks_the_threshold_where_errors_begin():
    # 20,000 inputs: entropy uniform on [0, 1]; predictions are perfect below 0.6, 30% wrong above.
    rng = np.random.default_rng(0)
    entropy = rng.uniform(0, 1, 20_000)
    correct = np.where(entropy < 0.6, True, rng.uniform(size=20_000) > 0.3)
    grid = np.linspace(0.01, 1.0, 100)
    result = guarantee_threshold(entropy, correct, alpha=0.01, delta=0.05, grid=grid)
    # accepted error at threshold t > 0.6 is 0.3 (t - 0.6) / t; the largest t with error < 1%
    # is about 0.62; the bound needs a margin, so the choice lies in [0.6, 0.62].
    assert 0.6 <= result.threshold <= 0.62
    accepted = entropy <= result.threshold
    assert 1 - correct[accepted].mean() <= 0.01
    assert result.accepted_error_upper_bound < 0.01
    assert math.isclose(result.validation_coverage, accepted.mean())


def test_guarantee_refuses_when_no_threshold_meets_the_target():
    rng = np.random.default_rng(1)
    entropy = rng.uniform(0, 1, 5_000)
    correct = rng.uniform(size=5_000) > 0.1  # 10% wrong everywhere
    with pytest.raises(CalibrationError, match="no threshold certifies"):
        guarantee_threshold(entropy, correct, alpha=0.005, delta=0.05)


def test_fixed_sequence_stops_at_first_failure():
    # Errors at low entropy, clean above: a loose threshold would pass on its own, but the strict
    # thresholds fail first, so fixed-sequence testing must refuse rather than skip ahead.
    entropy = np.linspace(0, 1, 10_000)
    correct = entropy > 0.2
    with pytest.raises(CalibrationError):
        guarantee_threshold(entropy, correct, alpha=0.01, delta=0.05, grid=np.linspace(0.1, 1.0, 10))


def test_referral_rate_mode_refers_that_fraction():
    entropy = np.arange(1000) / 1000
    result = referral_rate_threshold(entropy, np.ones(1000, dtype=bool), rate=0.05, channel="drawn",
                                     precision="int8")
    assert math.isclose(1 - result.validation_coverage, 0.05, abs_tol=0.002)
    assert result.mode == "referral_rate" and result.alpha is None
    assert (result.channel, result.precision) == ("drawn", "int8")  # the place it was asked for


def test_a_stricter_alpha_refers_more_and_a_budget_is_met():
    # Errors become more likely with entropy: error probability = entropy^3 / 2.
    rng = np.random.default_rng(3)
    entropy = rng.uniform(0, 1, 50_000)
    correct = rng.uniform(size=50_000) > entropy**3 / 2
    grid = np.linspace(0.005, 1.0, 200)
    loose = guarantee_threshold(entropy, correct, alpha=0.02, grid=grid)
    strict = guarantee_threshold(entropy, correct, alpha=0.002, grid=grid)
    assert strict.threshold < loose.threshold
    assert 1 - strict.validation_coverage > 1 - loose.validation_coverage
    # accepted error at t is t^3 / 8: alpha 2 % -> t about 0.54, alpha 0.2 % -> about 0.25
    assert 0.45 <= loose.threshold <= 0.55 and 0.2 <= strict.threshold <= 0.26


def test_the_calibration_record_round_trips_and_rejects_unknown_keys():
    from model.calibration import Calibration

    record = guarantee_threshold(np.linspace(0, 1, 5000), np.ones(5000, bool), alpha=0.01,
                                 grid=np.linspace(0.01, 1, 10))
    assert Calibration.from_dict(record.to_dict()) == record
    old = {k: v for k, v in record.to_dict().items() if k not in ("familiar_mass", "reason_fit")}
    assert Calibration.from_dict(old).familiar_mass is None  # metadata written before the reason rule
    with pytest.raises(ValueError, match="unknown calibration keys"):
        Calibration.from_dict({**record.to_dict(), "surprise": 1})
    # the retired second signal is read by the migration only (tests/test_migrate_records.py)
    with pytest.raises(ValueError, match=r"unknown calibration keys: \['unfamiliar_budget', 'unfamiliar_threshold'\]"):
        Calibration.from_dict({**record.to_dict(), "unfamiliar_threshold": None, "unfamiliar_budget": None})


def test_familiar_mass_separates_referred_digits_from_referred_non_digits():
    from model.fitting.guarantee import MASS_GRID, familiar_mass
    from model.refer_rule import top_two_mass

    rng = np.random.default_rng(0)
    digits = rng.uniform(0.7, 1.0, 400)  # a referred digit hesitates between two classes
    non_digits = rng.uniform(0.2, 0.6, 600)  # a referred non-digit spreads its mass
    mass, fit = familiar_mass(digits, non_digits)  # 85 % of the digits lie above 0.745
    assert mass in MASS_GRID and mass == pytest.approx(np.round(np.quantile(digits, 0.15) // 0.005 * 0.005, 3))
    assert fit["referred_digits_uncertain"] >= 0.85 and fit["referred_non_digits_unfamiliar"] == 1.0
    assert familiar_mass(digits, non_digits, floor=0.5)[0] > mass  # a lower floor names more "unfamiliar"
    few, fit = familiar_mass(np.array([0.5, 0.9, 0.95]), np.array([0.3, 0.55, 0.92]), floor=0.6)
    assert few == 0.9 and fit["referred_digits_uncertain"] == pytest.approx(2 / 3)  # 0.905 would keep only 1 of 3
    assert top_two_mass(np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])).tolist() == pytest.approx([0.8, 0.9])
    with pytest.raises(CalibrationError):
        familiar_mass(np.array([]), non_digits)


def test_make_calibrate_draws_with_the_checkpoints_training_seed():
    # the shipped recipe trains with seed 1 and calibrates with it after its last epoch: `make calibrate`,
    # with no --seed, draws the same posterior samples (a seed of 0 moved the threshold from 0.0396 to 0.0547)
    assert draws_seed(None, {"seed": 1}) == 1
    assert draws_seed(0, {"seed": 1}) == 0  # --seed asked for wins
    assert draws_seed(None, {}) == 0  # a record without a seed: the old default


def test_each_channel_is_fitted_on_its_own_part_of_the_mix_at_its_alpha():
    """The validation mix splits into the file channel (uploads, PNG files) and the drawn channel (pen
    drawings); each record is fitted on its part alone, at its channel's alpha, and says so."""
    from harness.inputs import SHIPPED, load_digit, mnist_fixtures
    from model.calibration import empty_records, read_records, served
    from model.checkpoint import load_checkpoint
    from model.data import Split
    from model.fitting.validation import CalibrationRequest, fit_refer_rules, mix_channels, with_fits

    digits = [(load_digit(path), label) for path, label in mnist_fixtures()]
    n = len(digits)
    images = np.stack([image for image, _ in digits] * 3)  # the mix: uploads, pen drawings, PNG files
    labels = np.array([label for _, label in digits] * 3)
    labels[n:2 * n] = (labels[n:2 * n] + 1) % 10  # the "drawings" all wrong: only their channel sees it
    composition = {"data": "tiny mix", "uploads": n, "pen drawings": n, "plain PNG files": n}
    channels = mix_channels(Split(images, labels), composition)
    assert channels["drawn"].split.labels.tolist() == labels[n:2 * n].tolist()
    assert channels["file"].split.labels.tolist() == labels[:n].tolist() + labels[2 * n:].tolist()
    assert (f"{2 * n} uploads and plain PNG files" in channels["file"].data
            and f"{n} pen drawings" in channels["drawn"].data)
    assert CalibrationRequest().alphas == {"file": 0.002, "drawn": 0.004}

    net, _ = load_checkpoint(SHIPPED)
    rate = CalibrationRequest(referral_rate=0.25, samples=8)
    fit = fit_refer_rules(net, Split(images, labels), rate, channels, None, "", ("float32",), seed=0,
                          temperature=False)["float32"]
    assert fit.refused is None and set(fit.records) == {"file", "drawn"}
    for channel, record in fit.records.items():
        assert record.channel == channel and record.data == channels[channel].data
        assert record.validation_size == len(channels[channel].split.labels)
    assert fit.records["file"].validation_accepted_accuracy == 1.0  # the fixtures are read right
    assert fit.records["drawn"].validation_accepted_accuracy == 0.0  # ... and every "drawing" wrong
    meta = with_fits({}, {"float32": fit})
    assert served(meta, "float32") == fit.records
    assert read_records(meta) == {"validation": {channel: {"float32": fit.records[channel]} for channel in fit.records},
                                  "reviewed": {"file": {}, "drawn": {}}}

    refused = fit_refer_rules(net, Split(images, labels), CalibrationRequest(samples=8), channels, None, "",
                              ("float32",), seed=0, temperature=False)["float32"]  # 2 * n files certify nothing
    assert refused.records == {} and refused.refused is not None and refused.refused.startswith("file channel")
    assert read_records(with_fits({}, {"float32": refused})) == empty_records()  # a refused fit adds nothing
