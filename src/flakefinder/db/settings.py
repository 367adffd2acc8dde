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

_PASSWORD_RE = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@]*):(?P<pw>[^@]*)@")


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe for messages and logs)."""
    return _PASSWORD_RE.sub(r"\g<head>:***@", url, count=1)


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
