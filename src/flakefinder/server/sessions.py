"""Browser sessions held by the server, and a lenient reading of the ``Cookie`` header.

A session is a random token that the server remembers until it expires or the user logs out
(:class:`SessionStore`); the cookie carries nothing else, so logging out really ends it. The
store is in memory and bounded: past ``max_sessions`` the oldest session ends. A restart of the
server ends every session (users log in again).

:func:`parse_cookies` reads the header as RFC 6265 section 5.4 sends it (``name=value`` pairs
separated by ``;``) and skips what it cannot read, so that another application's cookie on the
same host (a JSON value, spaces, a stray quote) cannot hide ours. Every value of a name is kept:
a cookie of the same name set for a longer path comes first, and must not shadow the real one.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import OrderedDict

TOKEN_BYTES = 32


def parse_cookies(header: str | None) -> dict[str, list[str]]:
    """Cookie name -> its values in header order; malformed pairs are skipped, never fatal."""
    out: dict[str, list[str]] = {}
    if not header:
        return out
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        out.setdefault(name, []).append(value)
    return out


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class SessionStore:
    """Live session tokens and their expiry times (thread-safe, at most ``max_sessions``)."""

    def __init__(self, ttl_s: float, *, max_sessions: int = 10_000) -> None:
        self.ttl_s = float(ttl_s)
        self.max_sessions = int(max_sessions)
        self._expires: OrderedDict[str, float] = OrderedDict()  # sha256(token) -> expiry
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expires)

    def create(self, now_s: float) -> str:
        """A new session token, valid for ``ttl_s`` from ``now_s``."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self._lock:
            self._drop_expired(now_s)
            self._expires[_digest(token)] = now_s + self.ttl_s
            while len(self._expires) > self.max_sessions:
                self._expires.popitem(last=False)
        return token

    def valid(self, token: str, now_s: float) -> bool:
        """Whether ``token`` is a live session (not expired, not logged out)."""
        if not 20 <= len(token) <= 200:
            return False
        with self._lock:
            expires = self._expires.get(_digest(token))
            if expires is None:
                return False
            if expires <= now_s:
                del self._expires[_digest(token)]
                return False
            return True

    def end(self, token: str) -> bool:
        """Forget ``token`` (log out); whether it was a session."""
        with self._lock:
            return self._expires.pop(_digest(token), None) is not None

    def _drop_expired(self, now_s: float) -> None:
        # insertion order is expiry order (one ttl for all), so the expired ones come first
        while self._expires:
            key, expires = next(iter(self._expires.items()))
            if expires > now_s:
                break
            del self._expires[key]
