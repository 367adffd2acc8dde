"""Where the flake database lives: ``DatabaseSettings`` and URL helpers. No SQLAlchemy here.

The URL comes from, in order: an explicit value (``--db`` on the command line), the environment variable
``FLAKEFINDER_DATABASE_URL``, or the default ``sqlite:///flakefinder.db`` (a file in the working directory).
Any SQLAlchemy URL works, e.g. ``postgresql+psycopg://user:password@host:5432/flakes``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_DATABASE_URL = "sqlite:///flakefinder.db"
DATABASE_URL_ENV = "FLAKEFINDER_DATABASE_URL"

_SECRET_PARAM_RE = re.compile(
    r"(?i)\b(password|passwd|pwd|pass|sslpassword|secret|token|api_key)=[^&;#\s]*"
)
_SCHEME_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>.*)$", re.DOTALL)


def _mask_userinfo(url: str) -> str:
    m = _SCHEME_RE.match(url)
    if m is None:
        # not scheme://...: anything before the last "@" may hold a password
        if "@" not in url:
            return url
        head, _, host = url.rpartition("@")
        prefix = head.split(":", 1)[0] + ":" if ":" in head else ""
        return f"{prefix}***@{host}"
    scheme, rest = m.group("scheme"), m.group("rest")
    if rest.startswith("/"):
        return url  # no authority (sqlite:///path): nothing to mask
    authority_end = len(rest)
    query = rest.find("?")
    at = rest.rfind("@", 0, query if query >= 0 else authority_end)
    if at < 0:
        return url
    userinfo, host = rest[:at], rest[at + 1 :]
    if ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{user}:***@{host}"


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe for messages and logs).

    Masks the password of ``user:password@host`` (also with an unencoded ``@`` or ``/`` in the
    password), password-like query parameters (``?password=...``), and, for text that is not
    a URL at all, everything before its last ``@``.
    """
    return _SECRET_PARAM_RE.sub(r"\1=***", _mask_userinfo(url))


def url_password(url: str) -> str | None:
    """The password in ``url`` as :func:`mask_url` finds it (to scrub driver messages)."""
    masked = _mask_userinfo(url)
    if masked == url:
        return None
    start = next((i for i, (a, b) in enumerate(zip(url, masked, strict=False)) if a != b), None)
    if start is None:
        return None
    tail = len(masked) - start - 3  # what follows "***"
    secret = url[start : len(url) - tail]
    return secret or None


def scrub_secrets(text: str, url: str) -> str:
    """``text`` (e.g. a driver's error message) with ``url``'s password and secrets masked."""
    out = text.replace(url, mask_url(url))
    password = url_password(url)
    if password:
        out = out.replace(password, "***")
    for m in _SECRET_PARAM_RE.finditer(url):
        value = m.group(0).split("=", 1)[1]
        if value:
            out = out.replace(value, "***")
    return _SECRET_PARAM_RE.sub(r"\1=***", out)


@dataclass(frozen=True)
class DatabaseSettings:
    """How to reach the database. Build with :meth:`from_env`; nothing is read at import time."""

    url: str = DEFAULT_DATABASE_URL
    echo: bool = False  # log every SQL statement (debugging)

    @classmethod
    def from_env(
        cls, url: str | None = None, *, environ: Mapping[str, str] | None = None
    ) -> DatabaseSettings:
        """Settings from an explicit ``url`` if given, else ``FLAKEFINDER_DATABASE_URL``, else the default."""
        env = os.environ if environ is None else environ
        chosen = url or env.get(DATABASE_URL_ENV, "").strip() or DEFAULT_DATABASE_URL
        echo = env.get("FLAKEFINDER_DATABASE_ECHO", "").strip().lower() in {"1", "true", "yes"}
        return cls(url=chosen, echo=echo)

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)
