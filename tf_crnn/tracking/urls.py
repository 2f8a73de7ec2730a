"""Which MongoDB a run goes to, and keeping its password out of everything stored or printed.

Resolution order of the database URL (:func:`tf_crnn.tracking.server.resolve_url`, beside the
server it may start; this module imports no server):

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
import socket
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

import pymongo
from pymongo.errors import ConfigurationError, PyMongoError

ENV_URL = "TF_CRNN_MONGO_URL"
DEFAULT_DB_NAME = "tf_crnn"
TLS_FILE_OPTIONS = ("tlsCAFile", "tlsCertificateKeyFile", "tlsCRLFile")  # URL options that name a local file


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


def ping(url: str, timeout_s: float = 3.0, db_name: str | None = None) -> None:
    """Raise :class:`TrackingError` unless a MongoDB server answers at ``url`` (and lets us read ``db_name``).

    The message says what went wrong, with the password as ``***``: the server
    cannot be reached, the URL is invalid, the TLS handshake failed, the
    credentials were rejected, or (with ``db_name``) the server wants
    credentials that the URL does not give. ``ping`` needs no authentication on
    MongoDB, so only the read of ``db_name``'s collection names finds the last case.
    """
    unreadable = unreadable_tls_file(url)
    if unreadable:
        raise TrackingError(f"{redact_url(url)} is not a usable MongoDB URL ({unreadable}): fix the path in "
                            f"mongo_url / ${ENV_URL}")
    try:
        with pymongo.MongoClient(url, serverSelectionTimeoutMS=int(timeout_s * 1000),
                                 connectTimeoutMS=int(timeout_s * 1000)) as client:
            client.admin.command("ping")
            if db_name:
                client[db_name].list_collection_names()
    except (ConfigurationError, ValueError, OSError) as e:  # a malformed URL, a missing tlsCAFile, ...
        raise TrackingError(f"{redact_url(url)} is not a usable MongoDB URL ({scrub(str(e), url_secrets(url))}): "
                            f"fix mongo_url / ${ENV_URL}") from None
    except PyMongoError as e:
        raise TrackingError(connection_problem(url, e, db_name)) from None


def unreadable_tls_file(url: str) -> str | None:
    """Which TLS file option of ``url`` names a file this process cannot read, in words; None when all can be read.

    Checked here, before pymongo, so the message names the option and the path whatever a pymongo release
    says of it (4.20 stopped naming the file).
    """
    options = {key.lower(): value for key, value in parse_qsl(urlsplit(url).query)}
    for key in TLS_FILE_OPTIONS:
        path = options.get(key.lower())
        if path is None:
            continue
        if not os.path.isfile(path):
            return f"{key}={path} is not an existing file"
        if not os.access(path, os.R_OK):
            return f"{key}={path} cannot be read by this user"
    return None


def connection_problem(url: str, error: Exception, db_name: str | None = None) -> str:
    """The message for a failed connection to ``url``: authentication, TLS, or an unreachable server."""
    shown = redact_url(url)
    text = scrub(str(error), url_secrets(url))
    code = getattr(error, "code", None)
    if code == 18 or "authentication failed" in text.lower():
        return (f"MongoDB at {shown} rejected the credentials (authentication failed): check the user name, "
                f"password and authSource in mongo_url / ${ENV_URL}")
    if code == 13:
        return (f"MongoDB at {shown} requires authentication to use database '{db_name}' "
                f"({text.split(', full error')[0]}): put a user with read and write rights in the URL, "
                f"e.g. mongodb://USER:PASSWORD@HOST:PORT/?authSource=admin (mongo_url or ${ENV_URL})")
    tls = any(f"{key}=true" in url.lower() for key in ("tls", "ssl")) or url.startswith("mongodb+srv://")
    if any(word in text for word in ("SSL", "TLS", "certificate")) or (tls and _port_open(url)):
        # pymongo often reports a failed handshake as a plain time-out: the port answering says it was TLS.
        reason = text.split(" (configured timeouts")[0].split(", Timeout:")[0]
        if reason.startswith("No servers found yet"):
            reason = "the port answers, but no TLS handshake completed: is the server using TLS?"
        return (f"TLS connection to MongoDB at {shown} failed ({reason}): check tls=true, tlsCAFile and "
                f"tlsCertificateKeyFile in the URL, and the server's certificate")
    return (f"cannot reach MongoDB at {shown} ({type(error).__name__}). Start that server, fix mongo_url / "
            f"${ENV_URL}, or unset both to use the embedded server (tf-crnn db start); "
            f"TF_CRNN_NO_OBSERVER=1 trains without recording a run")


def _port_open(url: str, timeout_s: float = 1.0) -> bool:
    """Whether the first host of ``url`` accepts TCP connections."""
    host, _, port = host_port(url).rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


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
