"""Digits sketched in code: the shapes people draw that MNIST's handwriting lacks, as skeletons.

A 7 of two straight strokes, an open or a closed 4, a boxy 0, a 1 with a flag and a foot, a
Z-shaped 2, a 9 with a straight stem: a few skeletons per digit, straight and curved variants,
placed by hand in a unit box. Two uses: the drawing battery re-draws them with a pen
(``model.synth.drawing_battery``), and :class:`DigitBank` holds them as the named digits that no generated
non-digit may resemble (the outlier hygiene of ``model.synth.outliers`` and ``model.synth.other_scripts``).
As training positives (rendered as uploads) they were measured and dropped: docs/experiments.md.
"""

from __future__ import annotations

import math

import numpy as np

from model.synth.canvas import SUPERSAMPLE, Points, bezier, canvas, finish, scaled

Stroke = tuple[str, Points]  # ("line", polyline corners) or ("curve", control points of a smooth curve)


def _oval(cx: float, cy: float, rx: float, ry: float, start: float = -90.0, sweep: float = 360.0,
          steps: int = 32) -> Points:
    return [(cx + rx * math.cos(math.radians(start + sweep * k / (steps - 1))),
             cy + ry * math.sin(math.radians(start + sweep * k / (steps - 1)))) for k in range(steps)]


def _line(*points: tuple[float, float]) -> Stroke:
    return ("line", list(points))


def _curve(points: Points) -> Stroke:
    return ("line", points)  # already dense: drawn as a polyline


def _smooth(*points: tuple[float, float]) -> Stroke:
    return ("curve", list(points))


SKELETONS: dict[int, list[list[Stroke]]] = {
    0: [[_curve(_oval(0.5, 0.5, 0.3, 0.42))], [_line((0.25, 0.1), (0.75, 0.1), (0.75, 0.9), (0.25, 0.9), (0.25, 0.1))],
        [_curve(_oval(0.5, 0.5, 0.22, 0.44, -60, 350))]],
    1: [[_line((0.5, 0.08), (0.5, 0.92))], [_line((0.3, 0.25), (0.55, 0.08), (0.55, 0.92))],
        [_line((0.3, 0.25), (0.55, 0.08), (0.55, 0.92)), _line((0.3, 0.92), (0.8, 0.92))]],
    2: [[_curve(_oval(0.5, 0.3, 0.28, 0.22, 190, 200)), _line((0.76, 0.38), (0.22, 0.9), (0.82, 0.9))],
        [_line((0.2, 0.1), (0.8, 0.1), (0.2, 0.9), (0.8, 0.9))],
        [_smooth((0.22, 0.25), (0.5, -0.05), (0.95, 0.25), (0.2, 0.9)), _line((0.2, 0.9), (0.85, 0.88))]],
    3: [[_curve(_oval(0.48, 0.29, 0.26, 0.2, 200, 250)), _curve(_oval(0.48, 0.71, 0.3, 0.21, 270, 250))],
        [_line((0.2, 0.1), (0.78, 0.1), (0.45, 0.45)), _curve(_oval(0.45, 0.7, 0.32, 0.24, 270, 240))]],
    4: [[_line((0.6, 0.08), (0.15, 0.62), (0.85, 0.62)), _line((0.62, 0.35), (0.62, 0.95))],
        [_line((0.2, 0.08), (0.2, 0.55), (0.8, 0.55)), _line((0.72, 0.08), (0.72, 0.95))],
        [_line((0.62, 0.95), (0.62, 0.08), (0.15, 0.65), (0.85, 0.65))]],
    5: [[_line((0.78, 0.1), (0.28, 0.1), (0.25, 0.45)), _curve(_oval(0.47, 0.66, 0.3, 0.25, 215, 265))],
        [_line((0.8, 0.1), (0.25, 0.1), (0.25, 0.5), (0.75, 0.5), (0.75, 0.9), (0.2, 0.9))]],
    6: [[_smooth((0.72, 0.08), (0.2, 0.3), (0.2, 0.9), (0.5, 0.92)), _curve(_oval(0.5, 0.7, 0.27, 0.22, 90, 360))],
        [_line((0.75, 0.1), (0.25, 0.1), (0.25, 0.9), (0.75, 0.9), (0.75, 0.5), (0.25, 0.5))]],
    7: [[_line((0.15, 0.1), (0.85, 0.1), (0.4, 0.92))], [_line((0.15, 0.1), (0.85, 0.1), (0.55, 0.92))],
        [_line((0.15, 0.12), (0.85, 0.1), (0.45, 0.92)), _line((0.35, 0.5), (0.8, 0.5))],
        [_line((0.15, 0.1), (0.85, 0.1)), _smooth((0.85, 0.1), (0.55, 0.45), (0.5, 0.92))],
        [_line((0.2, 0.1), (0.8, 0.1), (0.8, 0.92))]],
    8: [[_curve(_oval(0.5, 0.28, 0.22, 0.19)), _curve(_oval(0.5, 0.7, 0.28, 0.22))],
        [_line((0.25, 0.1), (0.75, 0.1), (0.75, 0.9), (0.25, 0.9), (0.25, 0.1)), _line((0.25, 0.5), (0.75, 0.5))]],
    9: [[_curve(_oval(0.5, 0.32, 0.25, 0.22)), _line((0.75, 0.32), (0.7, 0.92))],
        [_curve(_oval(0.5, 0.32, 0.25, 0.22)), _smooth((0.75, 0.32), (0.75, 0.8), (0.4, 0.95))],
        [_line((0.75, 0.5), (0.25, 0.5), (0.25, 0.1), (0.75, 0.1), (0.75, 0.92))]],
}


# ------------------------------------------------------------------- is a generated mark a digit?

MATCH_SIDE = 32  # shapes are compared at this size...
MATCH_BOX = 24  # ...fitted into this box, keeping aspect
DIGIT_DISTANCE = 1.4  # mean pixels between two skeletons below which one is read as the other
_BANK_SLANTS = (-0.3, 0.0, 0.3)
_BANK_SQUASH = (0.6, 1.0)


def normalised_skeleton(ink: np.ndarray) -> np.ndarray:
    """Ink ``[H, W]`` in [0, 1] -> bool ``[MATCH_SIDE, MATCH_SIDE]``: its one-pixel skeleton,
    cropped to the ink and fitted into MATCH_BOX keeping aspect, as the transform fits a digit."""
    from PIL import Image

    from model.synth.pen import thin

    mask = ink > 0.3
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    out = np.zeros((MATCH_SIDE, MATCH_SIDE), bool)
    if rows.size == 0:
        return out
    crop = (ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] * 255).astype(np.uint8)
    scale = MATCH_BOX / max(crop.shape)
    width, height = max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))
    small = np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.BOX)) > 60
    top, left = (MATCH_SIDE - height) // 2, (MATCH_SIDE - width) // 2
    out[top : top + height, left : left + width] = small
    return thin(out)


def _bank_ink(strokes: list[Stroke], slant: float, squash: float) -> np.ndarray:
    image, draw = canvas()
    for kind, points in strokes:
        path = bezier(points) if kind == "curve" else points
        placed = [(0.5 + (x - 0.5) * squash - slant * (y - 0.5), y) for x, y in path]
        draw.line(scaled([(0.1 + 0.8 * x, 0.1 + 0.8 * y) for x, y in placed]), fill=255, width=3 * SUPERSAMPLE,
                  joint="curve")
    return finish(image)


class DigitBank:
    """Every named digit skeleton (:data:`SKELETONS`: the straight 1, the 7 of two strokes, open
    and closed 4s, boxy and round 0s, ...) at three slants and two widths, as normalised skeletons
    and their distance maps: :meth:`distance` says how far a mark is from the nearest one."""

    def __init__(self) -> None:
        from scipy.ndimage import distance_transform_edt

        skeletons, digits = [], []
        for digit, variants in SKELETONS.items():
            for strokes in variants:
                for slant in _BANK_SLANTS:
                    for squash in _BANK_SQUASH:
                        skeletons.append(normalised_skeleton(_bank_ink(strokes, slant, squash)))
                        digits.append(digit)
        self.digits = np.array(digits)
        self.skeletons = np.stack(skeletons)  # [K, S, S]
        self.maps = np.stack([distance_transform_edt(~s) for s in skeletons])  # [K, S, S]
        self._edt = distance_transform_edt

    def nearest(self, ink: np.ndarray) -> tuple[int, float]:
        """The named digit nearest to ``ink`` and the distance: the larger of the two mean
        distances from one skeleton's pixels to the other's (a mark with an extra stroke is far)."""
        skeleton = normalised_skeleton(ink)
        if not skeleton.any():
            return -1, float("inf")
        ys, xs = np.nonzero(skeleton)
        to_bank = self.maps[:, ys, xs].mean(1)  # [K]
        own = self._edt(~skeleton)
        from_bank = (self.skeletons * own).sum((1, 2)) / self.skeletons.sum((1, 2))  # [K]
        distance = np.maximum(to_bank, from_bank)
        best = int(distance.argmin())
        return int(self.digits[best]), float(distance[best])

    def looks_like_digit(self, ink: np.ndarray) -> bool:
        return self.nearest(ink)[1] < DIGIT_DISTANCE


_BANK: DigitBank | None = None


def digit_bank() -> DigitBank:
    global _BANK
    if _BANK is None:
        _BANK = DigitBank()
    return _BANK
