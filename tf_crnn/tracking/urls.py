"""Which MongoDB a run goes to, and keeping its password out of everything stored or printed.

Resolution order of the database URL (:func:`resolve_url`):

1. ``mongo_url`` in the run's config;
2. the environment variable ``TF_CRNN_MONGO_URL``;
3. the embedded server: SecantusDB (PyPI ``SecantusDB``, MongoDB wire protocol
   over WiredTiger) started on 127.0.0.1 with its data in
   ``$TF_CRNN_HOME/db`` (``~/.tf_crnn/db`` by default) and reused by later runs
   (:mod:`tf_crnn.tracking.server`).

Passwords in URLs are replaced by ``***`` (:func:`redact_url`, :func:`scrub`)
wherever a URL is stored or printed.
"""
from __future__ import annotations

import os
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pymongo
from pymongo.errors import PyMongoError

ENV_URL = "TF_CRNN_MONGO_URL"
DEFAULT_DB_NAME = "tf_crnn"


class TrackingError(RuntimeError):
    """The database cannot be reached or the embedded server cannot start."""


# ---- URLs ---------------------------------------------------------------------

def redact_url(url: str | None) -> str | None:
    """``mongodb://user:secret@host/db`` -> ``mongodb://user:***@host/db``; other URLs unchanged."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{quote(unquote(parts.username or ''), safe='')}:***@{host}"))


def host_port(url: str) -> str:
    """``host:port`` of the first host of a MongoDB URL (what Omniboard's ``-m`` wants)."""
    netloc = urlsplit(url).netloc.rsplit("@", 1)[-1].split(",")[0]
    return netloc if ":" in netloc else f"{netloc}:27017"


def ping(url: str, timeout_s: float = 3.0) -> None:
    """Raise :class:`TrackingError` unless a MongoDB server answers at ``url``."""
    try:
        with pymongo.MongoClient(url, serverSelectionTimeoutMS=int(timeout_s * 1000),
                                 connectTimeoutMS=int(timeout_s * 1000)) as client:
            client.admin.command("ping")
    except PyMongoError as e:
        raise TrackingError(
            f"cannot reach MongoDB at {redact_url(url)} ({type(e).__name__}). Start that server, fix "
            f"mongo_url / ${ENV_URL}, or unset both to use the embedded server (tf-crnn db start)."
        ) from None


def resolve_url(config_url: str | None = None, start_embedded: bool = True) -> str:
    """The database URL a run uses (config, then ``$TF_CRNN_MONGO_URL``, then the embedded server).

    Raises:
        TrackingError: the chosen server cannot be reached or started.
    """
    url = config_url or os.environ.get(ENV_URL)
    if url:
        ping(url)
        return url
    from .server import EmbeddedServer  # the server module needs ping() from here

    server = EmbeddedServer.default()
    return server.start() if start_embedded else (server.url() or "")


# ---- secrets ----------------------------------------------------------------

def scrub(value, secrets: tuple[str, ...]):
    """``value`` (nested dicts / lists / strings) with every secret replaced by ``***``."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v, secrets) for v in value)
    return value


def url_secrets(url: str | None) -> tuple[str, ...]:
    """The password of a URL, raw and percent-encoded (empty when there is none)."""
    password = urlsplit(url).password if url else None
    if not password:
        return ()
    return tuple({unquote(password), password, quote(unquote(password), safe="")})
