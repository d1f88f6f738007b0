"""Every typed error of the service, in one place: what each means and its status. The statuses,
details and OpenAPI responses they become are in ``service/error_handlers.py``; the modules that
detect them (``preprocess``, ``batcher``, ``oip``, ``inference``, ``review/store``) raise them
from here."""

from __future__ import annotations


class ImageRejected(Exception):
    """An upload we will not classify; ``reason`` is a short machine-readable label."""

    reason = "rejected"


class UndecodableImage(ImageRejected):
    """Empty, truncated, corrupt, or not an image at all: 400."""

    reason = "undecodable"


class UnsupportedFormat(ImageRejected):
    """A recognised image or document format that is not accepted (TIFF, SVG, PDF, ...): 415."""

    reason = "unsupported_format"


class ImageTooLarge(ImageRejected):
    """A file over the byte limit, or a width x height over the pixel limit: 413."""

    reason = "too_large"


class BlankImage(ImageRejected):
    """No ink: the image is blank or nearly uniform, so it is not classified (``model.transform.NoInk``): 422."""

    reason = "no_ink"


class DecodeTimeout(ImageRejected):
    """Decoding took longer than BNN_DECODE_TIMEOUT_S (its thread finishes; the client is answered): 422."""

    reason = "decode_timeout"


class DecoderBusy(ImageRejected):
    """The decoding pool did not start this image within BNN_DECODE_TIMEOUT_S: 503."""

    reason = "decoder_busy"


class RejectedElement(Exception):
    """Upload ``index`` of a call that must answer all or nothing was refused with ``error``."""

    def __init__(self, index: int, error: ImageRejected):
        super().__init__(f"upload {index}: {error}")
        self.index, self.error = index, error


class QueueFull(Exception):
    """The micro-batcher's pending-request queue is at its bound: shed this request, 503."""


class ProtocolError(Exception):
    """A request the Open Inference Protocol (or this model) cannot take: 400 with ``{"error": ...}``."""


class ServiceUnavailable(Exception):
    """The model is not loaded (yet): 503 with Retry-After."""


class Unauthorized(Exception):
    """BNN_API_KEY is set and X-API-Key is missing or wrong: 401."""


class ModelNotFound(Exception):
    """A /v2 route named a model (or version) this server does not serve: 404."""


class ReviewUnavailable(Exception):
    """The review queue is off, or its store does not answer: 503 (predictions go on regardless)."""


class ExportAborted(RuntimeError):
    """The review export's store failed mid-stream: raised out of the response body (after its 200),
    so that the transfer ends without its final chunk and no client takes the part for the whole.
    Counted in ``bnn_review_export_aborted_total``, not as a bug."""


class ReviewUnauthorized(Exception):
    """A review route without a valid reviewer token (Authorization: Bearer): 401."""


class TooManyFiles(Exception):
    """More files than the route takes (several in /predict's `file`, or over the batch limit): 422."""


class ItemNotFound(LookupError):
    """No review item has this id (never queued, or dropped by retention): 404."""


class ItemConflict(RuntimeError):
    """The item cannot take this: another reviewer holds it, or it is labelled already (the message says which): 409."""


class AdminUnauthorized(Exception):
    """An admin route without a valid admin token (Authorization: Bearer, BNN_ADMIN_TOKENS): 401."""


class ModelChangeConflict(RuntimeError):
    """A model change cannot start: another is in progress, or there is nothing to roll back to or promote: 409."""


class ModelChangeRefused(Exception):
    """A worker's check refused the candidate; the live model stays: 422 with ``check`` and each worker's reason."""

    def __init__(self, check: str, reason: str, workers: list[dict[str, object]]):
        super().__init__(reason)
        self.check, self.reason, self.workers = check, reason, workers


class ModelChangeTimeout(TimeoutError):
    """Some worker did not answer a model change in time (it was aborted, or is still applying): 504."""

    def __init__(self, reason: str, workers: list[dict[str, object]]):
        super().__init__(reason)
        self.workers = workers
