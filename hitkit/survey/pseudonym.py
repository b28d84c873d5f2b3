"""Participant pseudonyms: HMAC-SHA256 of the platform ID under the study's secret.

The secret lives at Study.secret_path (by default under ~/.config/hitkit/, outside
the study folder and its exports). It is created on first use with mode 0600;
without it a pseudonym cannot be linked back to a platform ID, with it the same
ID always gives the same pseudonym (so one person's HITs join up).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_BYTES = 32


class SecretError(RuntimeError):
    pass


def load_or_create_secret(path: str | Path) -> bytes:
    """The study secret; created (0600, folder 0700) when missing."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: read theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(SECRET_BYTES) + "\n")
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SecretError(f"{path}: cannot read the study secret: {exc.strerror}") from None
    if len(text) < 32:
        raise SecretError(f"{path}: the study secret is too short (expected 64 hex characters)")
    if path.stat().st_mode & 0o077:
        raise SecretError(f"{path}: readable by others; run `chmod 600 {path}`")
    return text.encode("utf-8")


def pseudonym(secret: bytes, participant_key: str) -> str:
    """Keyed hash of a platform ID such as "prolific:5f2c..." (hex, 64 characters)."""
    return hmac.new(secret, participant_key.encode("utf-8"), hashlib.sha256).hexdigest()
