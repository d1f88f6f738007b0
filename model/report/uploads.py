"""The uploads section of the quality report: refer decisions on what people really send.

Every family is rendered as uploads by the simulator and run through the service's transform,
then scored at N samples. Per family: how many are referred (and for which reason), accuracy and
accepted accuracy for digit families, AUROC by entropy against the MNIST test digit uploads. The
operating-point table recalibrates on the file channel's part of the validation mix (its uploads
and PNG files, ``model.synth.pools.validation_mix``: what the file channel's threshold is
calibrated on) for several alphas and reads each off the test families: the trade-off the shipped
default was chosen from (on validation; test columns only report).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.calibration import Calibration
from model.data import Mnist, Split
from model.fitting.guarantee import CalibrationError, guarantee_threshold
from model.network import BayesianNet
from model.refer_rule import ReferRule, top_two_mass
from model.scoring import auroc, predict_images
from model.synth.families import DIGITS, LETTERS, SYMBOLS, UNLIKE_DIGITS, cycling, photo_crops, printed
from model.synth.low_resolution import BLUR, SIDES, low_resolution_source
from model.synth.outliers import outlier_source
from model.synth.pools import Pool, cached_pool, digit_uploads, mix_files, validation_mix, visible_only
from model.synth.upload_simulator import SIMULATOR_VERSION, GlyphSource, simulate_many

ALPHAS = (0.001, 0.002, 0.003, 0.005, 0.01)
REPORT_SEED = 31  # families' draws; the generated families use held-out seeds of their own below


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # "digits" (labelled; accuracy matters) or "ood" (should be referred)
    images: np.ndarray  # uint8 [n, 28, 28]
    labels: np.ndarray  # int64 [n]; -1 when not a digit
    note: str = ""


@dataclass(frozen=True)
class Scores:
    entropy: np.ndarray  # [n] nats
    predicted: np.ndarray  # [n]
    mass: np.ndarray | None = None  # [n] the top two classes' share of the probability
    confidence: np.ndarray | None = None  # [n] the top class's probability (for the ECE)


def score(net: BayesianNet, images: np.ndarray, samples: int, batch: int = 1000) -> Scores:
    result = predict_images(net, images, samples, batch)
    probabilities = result.mean_probs.double().numpy()
    return Scores(result.entropy.numpy(), probabilities.argmax(-1), top_two_mass(probabilities), probabilities.max(-1))


def decisions(scores: Scores, calibration: Calibration) -> tuple[np.ndarray, np.ndarray]:
    """(uncertain [n], unfamiliar [n]): the referrals under ``calibration``'s rule, each with its one
    reason (the service's ``refer_reason``); neither: accepted."""
    return ReferRule.of(calibration).reasons(scores.entropy, scores.mass)


def family_row(family: Family, scores: Scores, calibration: Calibration, reference: Scores | None) -> dict[str, Any]:
    uncertain, unfamiliar = decisions(scores, calibration)
    refer = uncertain | unfamiliar
    row: dict[str, Any] = {"family": family.name, "kind": family.kind, "count": len(family.labels), "note": family.note,
                           "referred": float(refer.mean()), "referred_uncertain": float(uncertain.mean()),
                           "referred_unfamiliar": float(unfamiliar.mean()),
                           "unfamiliar_of_referred": float(unfamiliar[refer].mean()) if refer.any() else None}
    if family.kind == "digits":
        correct = scores.predicted == family.labels
        row["accuracy"] = float(correct.mean())
        row["accepted_accuracy"] = float(correct[~refer].mean()) if (~refer).any() else float("nan")
        row["accepted_errors"] = int((~correct[~refer]).sum())
    elif reference is not None:
        row["auroc_entropy"] = auroc(reference.entropy, scores.entropy)
    return row


def _rendered(name: str, source: GlyphSource, count: int, seed: int, labels: np.ndarray, workers: int,
              cache_dir: Path, key: dict[str, Any]) -> Pool:
    def build() -> Pool:
        return visible_only(simulate_many(source, count, seed, workers, name), labels[:count])

    return cached_pool(f"report-{name.replace(' ', '-')}", {**key, "name": name, "count": count, "seed": seed,
                                                          "simulator": SIMULATOR_VERSION}, build, cache_dir)


def build_families(mnist: Mnist, fashion: Split | None, workers: int, cache_dir: Path,
                   scale: float = 1.0) -> list[Family]:
    """The report's families as the network sees them (cached). ``scale`` shrinks them for tests."""
    key = {"data": mnist.source_sha256}
    count = lambda n: max(8, int(n * scale))  # noqa: E731
    test = digit_uploads(mnist.test if scale >= 1 else mnist.test.subset(count(10_000)), "test",
                         mnist.source_sha256, workers, cache_dir)
    families = [Family("MNIST test digits as uploads", "digits", test.images, test.labels,
                       "same writers' population as training, new digits, new render draws")]
    glyphs, chars = printed(DIGITS, "held-out")
    digits_labels = np.array([int(c) for c in chars] * 2)
    pool = _rendered("printed digits held-out fonts", cycling(glyphs), count(2 * len(glyphs)), REPORT_SEED,
                     digits_labels, workers, cache_dir, key)
    families.append(Family("printed digits", "digits", pool.images, pool.labels,
                           f"{len(glyphs)} glyphs in the fonts training never printed in (DejaVu Sans, DejaVu Serif), "
                           "2 renders each"))
    if fashion is not None:
        n = count(2000)
        pool = _rendered("clothing", cycling(list(fashion.images[:n])), n, REPORT_SEED + 1, np.full(n, -1), workers,
                         cache_dir, key)
        families.append(Family("clothing (Fashion-MNIST test)", "ood", pool.images, pool.labels, "never seen"))
    n = count(2000)
    pool = _rendered("low-resolution scans", low_resolution_source(mnist.test.images), n, REPORT_SEED + 6,
                     mnist.test.labels.astype(np.int64), workers, cache_dir, {**key, "sides": SIDES, "blur": BLUR})
    families.append(Family("low-resolution scans", "digits", pool.images, pool.labels,
                           f"MNIST test digits scanned at {SIDES[0]}-{SIDES[1]} px, scaled up and blurred"))
    # letters in the held-out fonts only: training's Latin letters are printed in the training fonts
    for name, chars_set, fonts, seed in (("printed letters", LETTERS, "held-out", REPORT_SEED + 2),
                                         ("printed symbols", SYMBOLS, "all", REPORT_SEED + 3),
                                         ("printed letters unlike digits", UNLIKE_DIGITS, "held-out", REPORT_SEED + 5)):
        glyphs, _ = printed(chars_set, fonts)
        n = count(len(glyphs))
        pool = _rendered(name, cycling(glyphs), n, seed, np.full(n, -1), workers, cache_dir, {**key, "fonts": fonts})
        shown = "DejaVu Sans and Serif" if fonts == "held-out" else "every font"
        families.append(Family(name, "ood", pool.images, pool.labels,
                               f"{len(glyphs)} font glyphs ({shown}), never seen"))
    n = count(1000)
    pool = _rendered("photo crops", photo_crops(), n, REPORT_SEED + 4, np.full(n, -1), workers, cache_dir, key)
    families.append(Family("photo crops", "ood", pool.images, pool.labels, "never seen"))
    for offset, generated in enumerate(("shape", "scribble", "texture", "noise", "pair")):
        n = count(1000)
        pool = _rendered(f"generated {generated}", outlier_source(mnist.test.images, (generated,)), n,
                         REPORT_SEED + 10 + offset, np.full(n, -1), workers, cache_dir, key)
        families.append(Family(f"generated {generated}s", "ood", pool.images, pool.labels,
                               "training's generator, held-out draws (pairs from MNIST test)"))
    return families


def operating_points(validation: Scores, validation_labels: np.ndarray, families: list[Family],
                     scores: list[Scores], samples: int) -> list[dict[str, Any]]:
    """For each alpha: calibrate on ``validation`` (the file channel's part of the validation mix: the
    families are files), then read off every family."""
    rows = []
    correct = validation.predicted == validation_labels
    for alpha in ALPHAS:
        try:
            calibration = guarantee_threshold(validation.entropy, correct, alpha, 0.05, samples,
                                              data="validation uploads and PNG files")
        except CalibrationError:
            rows.append({"alpha": alpha, "refused": True})
            continue
        rows.append(_read_off(calibration, families, scores))
    return rows


def _read_off(calibration: Calibration, families: list[Family], scores: list[Scores]) -> dict[str, Any]:
    """One operating point: its threshold, the validation share it refers, and every family's referred
    share (and accepted accuracy, for digits) under it."""
    row: dict[str, Any] = {"alpha": calibration.alpha, "threshold": calibration.threshold,
                           "validation_referred": 1 - calibration.validation_coverage}
    for family, family_scores in zip(families, scores, strict=True):
        uncertain, unfamiliar = decisions(family_scores, calibration)
        refer = uncertain | unfamiliar
        row[f"{family.name}: referred"] = float(refer.mean())
        if family.kind == "digits":
            right = family_scores.predicted == family.labels
            row[f"{family.name}: accepted accuracy"] = float(right[~refer].mean()) if (~refer).any() else None
    return row


def uploads_report(net: BayesianNet, mnist: Mnist, fashion: Split | None, calibration: Calibration | None,
                   samples: int, workers: int, cache_dir: Path,
                   scale: float = 1.0) -> tuple[dict[str, Any], list[Family], list[Scores]]:
    """The uploads section (JSON-ready), and the families with their scores (for the plot)."""
    families = build_families(mnist, fashion, workers, cache_dir, scale)
    scores = [score(net, family.images, samples) for family in families]
    validation_split = mnist.validation if scale >= 1 else mnist.validation.subset(max(8, int(10_000 * scale)))
    validation, composition = validation_mix(validation_split, mnist.source_sha256, workers, cache_dir)  # as calibrated
    files = mix_files(composition)  # the file channel's part: the families are files
    validation_scores = score(net, validation.images[files], samples)
    report: dict[str, Any] = {"samples": samples, "families": [], "operating_points": operating_points(
        validation_scores, validation.labels[files], families, scores, samples)}
    if calibration is not None:
        reference = scores[0]
        report["families"] = [family_row(f, s, calibration, reference) for f, s in zip(families, scores, strict=True)]
    return report, families, scores


def plot_scores(families: list[Family], scores: list[Scores], calibration: Calibration | None, out: Path) -> str:
    """Left: each family's share of images per entropy bin (log axes), with the threshold. Right:
    the share referred per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    floor = 1e-6
    edges = np.geomspace(floor, np.log(10), 40)
    ax = axes[0]
    for family, s in zip(families, scores, strict=True):
        weights = np.full(len(s.entropy), 1.0 / max(1, len(s.entropy)))
        ax.hist(np.clip(s.entropy.astype(np.float64), floor, None), bins=edges, weights=weights, histtype="step",
                linewidth=1.4,
                linestyle="-" if family.kind == "digits" else "--", label=family.name)
    if calibration is not None:
        ax.axvline(calibration.threshold, color="red", linewidth=2, label="entropy threshold")
    ax.set(xscale="log", yscale="log", ylim=(1e-3, 1.5),
           xlabel="predictive entropy (nats; the first bin holds all below 1e-6)",
           ylabel="share of the family's images", title="Uncertain: predictive entropy")
    ax.legend(fontsize=7, loc="center left")
    ax = axes[-1]
    if calibration is not None:
        referred = [float(np.mean(np.any(decisions(s, calibration), axis=0))) for s in scores]
        colours = ["tab:blue" if f.kind == "digits" else "tab:orange" for f in families]
        positions = np.arange(len(families))
        ax.barh(positions, [100 * r for r in referred], color=colours)
        for y, r in zip(positions, referred, strict=True):
            ax.annotate(f"{100 * r:.1f} %", (100 * r, y), xytext=(3, 0), textcoords="offset points", va="center",
                        fontsize=8)
        ax.set_yticks(positions, [f.name for f in families], fontsize=8)
        ax.invert_yaxis()
        ax.set(xlim=(0, 115), xlabel="referred to a human (%); blue: digits, orange: not digits",
               title="Referred at the shipped thresholds")
    fig.suptitle("Uploads: how each family scores, and how much of it is referred (simulated uploads)")
    fig.tight_layout()
    fig.savefig(out / "uploads_scores.png", dpi=100)
    plt.close(fig)
    return "uploads_scores.png"
