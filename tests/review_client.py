"""Reviewer tokens for the review tests."""

from __future__ import annotations

TOKEN = "reviewer-token-0123456789"
OTHER_TOKEN = "second-token-0123456789ab"
TOKENS = f"ana:{TOKEN},ben:{OTHER_TOKEN}"


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
