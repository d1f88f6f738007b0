"""Reviewer tokens: who may review, separate from the client API key.

``BNN_REVIEW_TOKENS`` is ``name:token`` pairs, comma-separated (``ana:s3cret,ben:0ther``); a
label records the name (at most 64 characters: the store's column). Unset, one reviewer
``reviewer`` with a fresh random token is made at start (``python -m service`` makes it once,
before its workers fork, so all of them accept it). The token is never logged: it is written to
``review-token`` beside the store (mode 0600), the log names that file and the token's first 4
characters, and the page's address with the token is printed to the terminal only when stderr is
one (container logs are not). Tokens are compared in constant time; a review token grants the
review routes and nothing else, and the client API key never grants them.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("service")
DEFAULT_REVIEWER = "reviewer"
MIN_TOKEN_LENGTH = 16
MAX_NAME_LENGTH = 64  # the review store's claimed_by and labelled_by columns (service/review/schema.py)
TOKEN_FILE = "review-token"
SHOWN_PREFIX = 4  # characters of a generated token the log may show, to tell one start's token from another's


class InvalidTokens(ValueError):
    """BNN_REVIEW_TOKENS (or BNN_ADMIN_TOKENS) is malformed (the message says where)."""


@dataclass(frozen=True)
class Reviewers:
    """Named tokens: the reviewers', and in the same form the admins' (``BNN_ADMIN_TOKENS``)."""

    tokens: tuple[tuple[str, str], ...]  # (name, token)

    @classmethod
    def parse(cls, spec: str, setting: str = "BNN_REVIEW_TOKENS") -> Reviewers:
        pairs = []
        for index, part in enumerate(part.strip() for part in spec.split(",")):
            name, colon, token = part.partition(":")
            if not colon or not name.strip() or not token:
                raise InvalidTokens(f"{setting} entry {index + 1}: expected name:token")
            if len(token) < MIN_TOKEN_LENGTH:
                raise InvalidTokens(f"{setting} entry {index + 1} ({name.strip()}): a token needs at least "
                                    f"{MIN_TOKEN_LENGTH} characters")
            if len(name.strip()) > MAX_NAME_LENGTH:
                raise InvalidTokens(f"{setting} entry {index + 1}: a name has at most {MAX_NAME_LENGTH} characters "
                                    f"(this one has {len(name.strip())})")
            pairs.append((name.strip(), token))
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names):
            raise InvalidTokens(f"{setting}: a name appears twice")
        return cls(tuple(pairs))

    @classmethod
    def generated(cls) -> Reviewers:
        return cls(((DEFAULT_REVIEWER, secrets.token_urlsafe(24)),))

    def spec(self) -> str:
        return ",".join(f"{name}:{token}" for name, token in self.tokens)

    def who(self, token: str) -> str | None:
        """The reviewer holding ``token``, or None. Every token is compared (constant time each)."""
        found = None
        for name, known in self.tokens:
            if hmac.compare_digest(token.encode(), known.encode()):
                found = name
        return found


def show_review_address(host: str, port: int, reviewers: Reviewers, directory: Path,
                        terminal: bool | None = None) -> Path:
    """Hand a generated reviewer token to the person starting the service, never to the logs: write it to
    ``directory/review-token`` (mode 0600; a fresh temporary file when that cannot be written), log the
    page's address without it, the file and the token's first characters, and print the address with
    the token (in the fragment: never sent to a server) to stderr when stderr is a terminal. Returns the file."""
    name, token = reviewers.tokens[0]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # a wildcard bind: the address to open here
    page = f"http://{shown}:{port}/review"
    path = write_token(directory / TOKEN_FILE, token)
    log.warning("review page %s (reviewer %r; set BNN_REVIEW_TOKENS to choose): its token, %s..., is in %s", page,
                name, token[:SHOWN_PREFIX], path)
    if sys.stderr.isatty() if terminal is None else terminal:
        print(f"review page: {page}#token={token}", file=sys.stderr, flush=True)
    return path


def write_token(path: Path, token: str) -> Path:
    """``token`` in ``path``, readable by this user alone (0600 from creation: never briefly open to others)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(descriptor, 0o600)  # a file left by an earlier start may have had other bits
        except OSError:
            os.close(descriptor)
            raise
    except OSError as error:
        descriptor, name = tempfile.mkstemp(prefix="bnn-review-token-")  # mode 0600
        log.warning("cannot write %s (%s): the reviewer token goes to %s instead", path, error, name)
        path = Path(name)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    return path
