"""API shapes only (pydantic). "Model" in this project means the network, never these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from model.calibration import Channel
from model.refer_rule import ReferReason

OIP_PREFIX = "/v2"  # the Open Inference Protocol's routes


def error_body(path: str, message: str) -> dict[str, str]:
    """An error's JSON: ``{"error": message}`` on the Open Inference Protocol's routes (its
    shape), ``{"detail": message}`` everywhere else."""
    if path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/"):
        return {"error": message}
    return {"detail": message}


class PredictionOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    digit: int = Field(alias="class", ge=0, le=9, description="predicted digit: argmax of probabilities")
    probabilities: list[float] = Field(description="mean class probabilities over the samples (10, sum 1)")
    entropy: float = Field(description="predictive entropy of the mean probabilities, nats (0 to ln 10)")
    mutual_information: float = Field(description="epistemic part of the entropy, nats")
    expected_entropy: float = Field(description="aleatoric part of the entropy, nats")
    refer: bool = Field(description="true when entropy > threshold: send this image to a human")
    refer_reason: ReferReason | None = Field(
        description="why it was referred: 'uncertain' (a digit, but unsure which: the two most probable classes hold "
                    "most of the probability) or 'unfamiliar' (the probability is spread over many classes: probably "
                    "not a digit); null when not referred")
    candidates: list[int] = Field(description="the digits worth a reviewer's look, most likely first: the top class, "
                                              "then up to two more that each hold at least 5 % while the ones before "
                                              "hold under 95 % (just the digit when the answer is sure)")
    threshold: float = Field(description="calibrated entropy threshold, nats: the channel's")
    channel: Channel = Field("file", description="whose calibrated refer rule judged it: 'file' (a file posted) or "
                                                 "'drawn' (a drawing on the try-it page's pad), as the request said")
    samples: int = Field(description="N posterior samples used")
    audit: bool = Field(description="true for a random fraction (BNN_AUDIT_FRACTION, default 2 %) of all answers, "
                                    "referred or not: a human checks it, to measure the live accepted error and to "
                                    "recalibrate on what is really sent")
    review_id: str | None = Field(None, description="the review item this answer became (referred, or audited): a "
                                                     "reviewer labels it at /review; null when not queued")
    model_version: str
    filename: str | None = Field(None, description="the uploaded file's name, in batch answers")
    spread: list[float] | None = Field(None, description="only with include=spread: each class probability's "
                                                         "standard deviation over the N samples (10 values)")
    votes: list[int] | None = Field(None, description="only with include=spread: how many of the N samples put each "
                                                      "class first (10 counts, summing to N)")
    input: list[list[int]] | None = Field(None, description="only with include=input: the 28 x 28 image the network "
                                                            "was given after preprocessing (rows top to bottom, "
                                                            "0-255, ink high, as MNIST)")


@dataclass(frozen=True)
class Include:
    """Opt-in answer fields (query ``include``): off by default, so clients pay nothing for them."""

    spread: bool = False  # spread, votes
    input: bool = False  # input

    def excluded(self) -> set[str]:
        """The PredictionOut fields to leave out of the answer."""
        return ({"spread", "votes"} if not self.spread else set()) | ({"input"} if not self.input else set())


INCLUDE_VALUES = ("spread", "input")


class BatchErrorOut(BaseModel):
    filename: str | None = None
    status: int = Field(description="the HTTP status this image alone would have got")
    reason: str = Field(description="machine-readable reason, e.g. unsupported_format")
    detail: str


class ErrorOut(BaseModel):
    detail: str = Field(description="what was wrong and what to do about it")


class ProtocolErrorOut(BaseModel):
    error: str = Field(description="what was wrong (the Open Inference Protocol's error shape)")


class HealthOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    status: str
    model_version: str | None = None
    precision: str | None = None  # the conv trunk's: "int8" or "float32"
    runtime: str | None = None  # what runs the trunk: "onnxruntime" (int8) or "pytorch" (float32)
    calibrated_on: str | None = None  # the refer rule's data: "validation mix", or "reviewed audits (...)"


# -- the review API (service/routes/review.py) ------------------------------------------------------
DigitText = Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
ReviewLabel = Annotated[StrictInt, Field(ge=0, le=9)] | DigitText | Literal["not_a_digit", "unreadable"]


class LabelIn(BaseModel):
    label: ReviewLabel = Field(description="the digit the image shows (0-9, a number or its text), "
                                                    "'not_a_digit', or 'unreadable'")


class ItemLinks(BaseModel):
    file: str | None = Field(description="the image as decoded, re-encoded as PNG, at most 384 px a side (null when "
                                         "it was sent as a 28 x 28 array)")
    input: str = Field(description="the 28 x 28 the network saw, as PNG")


class ReviewItemOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    reason: Literal["referred", "audit"] = Field(description="audit: an answer drawn at random for a spot check "
                                                             "(referred or not: see refer); referred: a referred "
                                                             "answer the audit sample did not draw")
    refer: bool = Field(description="the answer said refer")
    audit_fraction: float | None = Field(description="an audit: the fraction it was drawn with (its weight in the "
                                                     "live estimates is 1 / fraction); null otherwise")
    refer_reason: ReferReason | None
    answer: dict[str, Any] = Field(description="the answer the client got (class, probabilities, entropy, "
                                               "refer_reason, candidates, samples, model_version, ...)")
    model_version: str
    created: datetime
    claimed_by: str | None
    lease_expires: datetime | None = Field(description="the claim ends then; unlabelled, the item waits again")
    skips: int
    label: str | None
    labelled_by: str | None
    labelled_at: datetime | None
    links: ItemLinks


class AcceptedErrorOut(BaseModel):
    audited: int = Field(description="labelled accepted audits that count (unreadable left out)")
    wrong: int
    unreadable: int
    ratio: float | None = Field(description="the live error of accepted answers: wrong / audited, each audit weighted "
                                            "by 1 / its draw fraction; null before a label")
    lower: float = Field(description="Clopper-Pearson lower bound")
    upper: float = Field(description="Clopper-Pearson upper bound")
    confidence: float
    legacy: int = Field(description="labelled accepted audits stored before audits carried their draw fraction: "
                                    "left out")
    drawn: int = Field(0, description="in the files' estimate: labelled accepted audits of the other channels, "
                                      "left out of it: drawings on the page's pad (channel 'drawn', promised "
                                      "another alpha); 0 in the drawn channel's. Named 'drawn' since the drawn "
                                      "channel was the only other one")
    target: float | None = Field(description="the channel's calibrated promise (alpha): its accepted answers wrong at "
                                             "most this often; broken with confidence when lower > target")


# each channel's live accepted error in ReviewStatsOut, under its public field (the file channel's: the one
# from before channels)
ACCEPTED_ERROR_FIELDS: dict[Channel, str] = {"file": "accepted_error", "drawn": "drawn_accepted_error"}


class ReviewStatsOut(BaseModel):
    reviewer: str = Field(description="who is asking")
    waiting: dict[str, int] = Field(description="items free to claim, by reason")
    claimed: int = Field(description="items held by a reviewer now")
    labelled: dict[str, dict[str, int]] = Field(description="labels by item reason, then label")
    done_today: dict[str, int] = Field(description="labels since 00:00 UTC, by reviewer")
    agreement: float | None = Field(description="share of labelled items (unreadable left out) whose label is the "
                                                "answer's class")
    accepted_error: AcceptedErrorOut = Field(description="the file channel's: audits of files a client posted")
    drawn_accepted_error: AcceptedErrorOut = Field(description="the drawn channel's: audits of drawings on the try-it "
                                                               "page's pad, held to its own promise (target)")
    referrals: dict[str, dict[str, int]] = Field(description="what the referred items were, by refer_reason and "
                                                             "'all': right (the answer was right after all), wrong "
                                                             "(another digit), not_a_digit, unreadable")
    stored_items: int
    stored_bytes: int
    buffered: int = Field(description="answers this worker holds for the store (nonzero while it is slow or down)")
