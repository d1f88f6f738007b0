"""Reviewer tokens: who may review, separate from the client API key.

``BNN_REVIEW_TOKENS`` is ``name:token`` pairs, comma-separated (``ana:s3cret,ben:0ther``); a
label records the name. Unset, one reviewer ``reviewer`` with a fresh random token is made at
start (``python -m service`` makes it once, before its workers fork, so all of them accept it)
and the review page's address with it is logged once, as Jupyter does. Tokens are compared in
constant time; a review token grants the review routes and nothing else, and the client API key
never grants them.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass

log = logging.getLogger("service")
DEFAULT_REVIEWER = "reviewer"
MIN_TOKEN_LENGTH = 16


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


def log_review_address(host: str, port: int, reviewers: Reviewers) -> None:
    """The review page's address with the first reviewer's token (in the fragment: never sent to a server)."""
    name, token = reviewers.tokens[0]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # a wildcard bind: the address to open here
    log.warning("review page (reviewer %r; set BNN_REVIEW_TOKENS to choose): http://%s:%d/review#token=%s", name,
                shown, port, token)
