"""Service settings from the environment, all with the prefix ``BNN_`` (e.g. ``BNN_PORT=9000``).

Built in ``create_app`` (never at import), so each test builds its own.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.precision import KINDS, ServingRequest
from service.inference.audit import DEFAULT_FRACTION
from service.review.access import Reviewers
from service.review.bounds import (
    DEFAULT_BUFFER_BYTES,
    DEFAULT_ITEM_BYTES,
    DEFAULT_SOURCE_SHARE,
    DEFAULT_STATS_INTERVAL_S,
)
from service.review.schema import async_url

MIB = 1024 * 1024
# an RGBA canvas and its two working copies (service/inference/preprocess.py decode_cost)
MAX_DECODE_BYTES_PER_PIXEL = 12
# prometheus_client's variable: the directory where several workers keep their metric values.
# It must be set before prometheus_client is first imported (it picks its value class then).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
MIN_API_KEY_CHARS = 16  # a shorter BNN_API_KEY (an empty one included) stops the start
CONTROL_DIR_ENV = "BNN_CONTROL_DIR"  # where several workers agree on model changes (service/lifecycle/control.py)


class Settings(BaseSettings):
    # hide_input_in_errors: a refused value is not echoed into logs (keys, tokens, database passwords)
    model_config = SettingsConfigDict(env_prefix="BNN_", extra="ignore", hide_input_in_errors=True)

    model_path: Path = Field(Path("checkpoints/bnn.safetensors"), description="weights; metadata JSON beside it")
    precision: ServingRequest = Field(
        "auto", description=f"the conv trunk's precision: auto (int8 where the CPU has int8 dot-product units: "
                            f"{', '.join(KINDS['int8'].units)}; else float32), float32, or int8; the checkpoint "
                            f"needs a calibration record for it (and for int8 its int8 trunk)")
    default_samples: int | None = Field(None, ge=1,
                                        description="N when a request names none (default: calibration's N)")
    max_samples: int = Field(1000, ge=1, le=100_000, description="largest N a request may ask for")
    threshold: float | None = Field(None, ge=0.0, description="override the calibrated entropy threshold (nats)")
    expected_referral_rate: float | None = Field(
        None, ge=0.0, le=1.0, description="referral rate to expect (default: the calibration split's; unknown when "
                                          "BNN_THRESHOLD overrides the threshold)")
    audit_fraction: float = Field(DEFAULT_FRACTION, ge=0.0, le=1.0, description="fraction of all answers (accepted and "
                                  "referred) drawn at random for a spot check, audit=true "
                                  "(service/inference/audit.py says why 2 %)")
    max_upload_bytes: int = Field(8 * MIB, ge=1024, description="largest single image file")
    max_request_bytes: int = Field(32 * MIB, ge=1024, description="largest request body")
    max_pixels: int = Field(40_000_000, ge=784, description="largest width x height, checked from the header")
    max_batch_files: int = Field(32, ge=1, description="most files in one /predict/batch request")
    max_request_decode_bytes: int = Field(
        512 * MIB, ge=MIB, description="most bytes one request's images may allocate to decode, together (width x "
                                       "height x bytes per pixel, read from their headers); images past it get 413")
    decode_threads: int = Field(1, ge=1, le=64, description="threads per worker decoding large images off the event "
                                                             "loop (service/inference/decoding.py)")
    decode_timeout_s: float = Field(2.0, gt=0.0, description="an image sent to the decoding pool is answered within "
                                                              "this: not started, 503; still decoding, 422")
    threads: int = Field(1, ge=1, le=256, description="torch intra-op threads per worker (workers x threads = cores)")
    workers: int = Field(2, ge=1, le=64, description="worker processes (python -m service); metrics add up")
    micro_batching: bool = Field(True, description="stack concurrent requests into one vectorized pass")
    batch_max_images: int = Field(64, ge=1, le=4096, description="most images in one micro-batched pass")
    batch_max_wait_ms: float = Field(2.0, ge=0.0, le=1000.0, description="longest wait for more requests to join")
    inference_thread: bool = Field(False, description="run each micro-batched pass in a thread rather than on the "
                                                       "event loop (see service/inference/batcher.py: slower on one "
                                                       "core per worker; for one worker with several torch threads)")
    queue_max: int = Field(256, ge=1, description="most requests waiting for inference before 503")
    body_timeout_s: float = Field(30.0, gt=0.0, description="whole request body must arrive within this (else 408)")
    header_timeout_s: float = Field(10.0, gt=0.0, description="a request's header lines must arrive within this "
                                                               "from its first byte (else 408 and the connection "
                                                               "closed)")
    max_connections: int = Field(1024, ge=1, description="open connections per worker; at the bound a new one takes "
                                                          "the place of one idle or unread for 1 s, else gets 503 with "
                                                          "Retry-After and is closed")
    write_timeout_s: float = Field(10.0, gt=0.0, description="an answer the client does not read: a connection whose "
                                                              "writes stay paused (64 KiB unsent) or whose close waits "
                                                              "on unsent bytes this long is closed")
    access_log: bool = Field(False, description="log one line per request (uvicorn access log)")
    api_key: SecretStr | None = Field(None, description="if set (at least 16 characters), prediction routes need "
                                                        "header X-API-Key")
    review: bool = Field(True, description="queue referred and audit-sampled answers for human review (the review "
                                           "API and page at /review); false: neither")
    review_db: str = Field("sqlite:///data/review.db", description="the review store: sqlite:///PATH (one host; "
                                                                  "WAL mode) or postgresql://USER:PASS@HOST/DB "
                                                                  "(several workers or pods)")
    review_tokens: SecretStr | None = Field(None, description="reviewers as name:token pairs, comma-separated; unset: "
                                                              "one made at start and logged with the page's address")
    review_lease_s: float = Field(300.0, ge=1.0, description="how long a reviewer holds a claimed item")
    review_retention_days: float = Field(30.0, gt=0.0, description="items older than this are dropped")
    review_max_items: int = Field(100_000, ge=1, description="most items kept; the oldest beyond it are dropped")
    review_max_bytes: int = Field(2048 * MIB, ge=MIB, description="most bytes of images kept; the oldest beyond "
                                                                  "it are dropped")
    review_retention_interval_s: float = Field(60.0, gt=0.0, description="how often each worker runs the "
                                                                       "retention pass (and exports what it drops)")
    review_export_dir: Path | None = Field(None, description="where labelled items are appended as NDJSON before "
                                                             "retention drops them (unset: review-export beside the "
                                                             "SQLite store, or data/review-export)")
    review_buffer: int = Field(10_000, ge=1, description="most answers waiting in a worker for the store (while "
                                                         "it is slow or down) before new ones are not queued")
    review_buffer_bytes: int = Field(DEFAULT_BUFFER_BYTES, ge=MIB, description="most bytes of images waiting in a "
                                                                               "worker for the store")
    review_max_item_bytes: int = Field(DEFAULT_ITEM_BYTES, ge=1024, description="largest stored image of an item; "
                                                                                "a larger one is left out (the item "
                                                                                "keeps its 28 x 28)")
    review_source_share: float = Field(DEFAULT_SOURCE_SHARE, gt=0.0, le=1.0, description="most of the buffer and of "
                                       "the store's caps one source's unlabelled items may hold (1: no bound)")
    review_stats_interval_s: float = Field(DEFAULT_STATS_INTERVAL_S, gt=0.0, description="how often each worker reads "
                                           "the review statistics for /metrics")
    admin_tokens: SecretStr | None = Field(None, description="admins as name:token pairs, comma-separated: they may "
                                                             "shadow, promote and roll back models (/admin); unset: "
                                                             "the admin routes do not exist")
    one_of_several_pods: bool = Field(default_factory=lambda: "KUBERNETES_SERVICE_HOST" in os.environ,
                                      description="whether the admin API reaches one pod of several, whose model "
                                                  "changes the others do not follow (default: in a Kubernetes pod); "
                                                  "GET /admin/models says so, and python -m model.learn then stops "
                                                  "before promoting")
    models_dir: Path = Field(Path("checkpoints"), description="the only directory candidates (admin paths, "
                                                              "BNN_SHADOW_CHECKPOINT) load from: regular files "
                                                              "inside it, symlinks resolved "
                                                              "(service/lifecycle/checks.py)")
    max_checkpoint_bytes: int = Field(64 * MIB, ge=1024, description="largest candidate weights or metadata file, "
                                                                     "checked before it is read")
    shadow_checkpoint: Path | None = Field(None, description="a candidate loaded at start beside the live model, "
                                                             "answering BNN_SHADOW_FRACTION of traffic off the "
                                                             "response path")
    shadow_fraction: float = Field(0.1, ge=0.0, le=1.0, description="fraction of answered images the shadow also "
                                                                     "answers, when one is loaded")
    control_dir: Path | None = Field(None, description="where the workers agree on model changes (python -m service "
                                                       "makes a fresh one; set it to keep a promotion across restarts)")
    host: str = Field("127.0.0.1", description="bind address (python -m service)")
    port: int = Field(8000, ge=1, le=65535, description="bind port (python -m service)")

    @field_validator("review_tokens", "admin_tokens", "shadow_checkpoint", "control_dir", "review_export_dir",
                     mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value  # compose passes "" for unset

    @field_validator("api_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # Unset (absent from the environment, as docker-compose.yml leaves it) means no key; a key
        # that is set must be hard to guess (an empty one would match an empty X-API-Key header).
        if value is not None and len(value.get_secret_value()) < MIN_API_KEY_CHARS:
            raise ValueError(f"BNN_API_KEY is set but {len(value.get_secret_value())} characters long: give it at "
                             f"least {MIN_API_KEY_CHARS} (e.g. python -c 'import secrets; "
                             "print(secrets.token_urlsafe(24))'), or unset it to need no key")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.default_samples is not None and self.default_samples > self.max_samples:
            raise ValueError(f"BNN_DEFAULT_SAMPLES={self.default_samples} exceeds BNN_MAX_SAMPLES={self.max_samples}")
        if self.review:
            async_url(self.review_db)  # ValueError naming BNN_REVIEW_DB
            if self.review_tokens is not None:
                Reviewers.parse(self.review_tokens.get_secret_value())
        if self.admin_tokens is not None:
            admins = Reviewers.parse(self.admin_tokens.get_secret_value(), "BNN_ADMIN_TOKENS")
            if self.review_tokens is not None:
                reviewers = Reviewers.parse(self.review_tokens.get_secret_value())
                if any(reviewers.who(token) for _, token in admins.tokens):
                    raise ValueError("BNN_ADMIN_TOKENS: a token is also a reviewer's; give admins their own")
        if self.max_pixels * MAX_DECODE_BYTES_PER_PIXEL > self.max_request_decode_bytes:
            raise ValueError(f"BNN_MAX_REQUEST_DECODE_BYTES={self.max_request_decode_bytes} cannot hold one image of "
                             f"BNN_MAX_PIXELS={self.max_pixels} at up to {MAX_DECODE_BYTES_PER_PIXEL} bytes a pixel")
        if self.max_upload_bytes > self.max_request_bytes:
            raise ValueError("BNN_MAX_UPLOAD_BYTES must not exceed BNN_MAX_REQUEST_BYTES")
        return self
