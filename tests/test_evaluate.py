"""The quality report end to end on tiny data: arrays section, uploads section, operating points, plots."""

import json

from harness.inputs import SHIPPED, shipped_calibration
from model.evaluate import main


def test_report_has_the_uploads_section_per_family(tiny_idx_dir, tmp_path):
    out = tmp_path / "report"
    metadata_before = SHIPPED.with_suffix(".json").read_bytes()
    assert main(["--checkpoint", str(SHIPPED), "--data-dir", str(tiny_idx_dir), "--no-ood", "--samples", "4",
                 "--scale", "0.004", "--workers", "1", "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
                 "--drawings", "20"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    families = {row["family"]: row for row in report["uploads"]["families"]}
    assert {"MNIST test digits as uploads", "printed digits", "printed letters", "printed letters unlike digits",
            "printed symbols", "photo crops",
            "generated shapes", "generated noises"} <= set(families)
    digits = families["MNIST test digits as uploads"]
    assert digits["kind"] == "digits" and digits["count"] == 40  # the tiny test split, every digit rendered
    assert 0.0 <= digits["referred"] <= 1.0 and 0.0 <= digits["accuracy"] <= 1.0
    assert all(0.0 <= row["auroc_entropy"] <= 1.0 for row in families.values() if row["kind"] == "ood")
    assert families["generated noises"]["referred"] > 0.5  # noise is not a digit, even at N = 4
    alphas = [row["alpha"] for row in report["uploads"]["operating_points"]]
    assert alphas == sorted(alphas) and len(alphas) == 5
    assert {"uploads_scores.png", "referral_curve.png", "reliability.png"} <= set(report["plots"])
    assert all((out / name).stat().st_size > 10_000 for name in report["plots"])
    assert SHIPPED.with_suffix(".json").read_bytes() == metadata_before  # no --write-metadata: left alone
    files, arrays = report["png_files"]["files"], report["png_files"]["arrays"]
    assert files["count"] == arrays["count"] == 40 and 0.0 <= files["ece"] <= 1.0  # every tiny test digit as a file
    parts = report["service_view"]["parts"]
    assert set(parts) == {"uploads", "pen drawings", "plain PNG files"} and parts["pen drawings"]["count"] == 40
    overall = report["service_view"]["overall"]
    assert overall["count"] == 120 and overall["coverage"] == 1 - overall["referred"]
    channels = report["service_view"]["channels"]  # each part under its channel's record, as served
    for channel, parts_of, count in (("file", ["uploads", "plain PNG files"], 80), ("drawn", ["pen drawings"], 40)):
        record = shipped_calibration("float32", channel)
        assert channels[channel]["parts"] == parts_of and channels[channel]["count"] == count
        assert (channels[channel]["threshold"], channels[channel]["alpha"]) == (record["threshold"], record["alpha"])
    assert overall["guarantee_held"] == (channels["file"]["guarantee_held"] and channels["drawn"]["guarantee_held"])
    assert report["calibrated"]["threshold"] == shipped_calibration("float32")["threshold"]  # the arrays: files
    drawings = report["drawings"]["in_process"]
    assert drawings["digit_drawings"] == 20 and set(drawings["per_digit"]) == {str(d) for d in range(10)}
    assert drawings["non_digits"]["letters"]["count"] > 10 and drawings["non_digits"]["doodles"]["count"] > 10
