"""Which MongoDB a run goes to, and keeping its password out of everything stored or printed.

Resolution order of the database URL (:func:`tf_crnn.tracking.server.resolve_url`, beside the
server it may start; this module imports no server):

1. ``mongo_url`` in the run's config;
2. the environment variable ``TF_CRNN_MONGO_URL``;
3. the embedded server: SecantusDB (PyPI ``SecantusDB``, MongoDB wire protocol
   over WiredTiger) started on 127.0.0.1 with its data in
   ``$TF_CRNN_HOME/db`` (``~/.tf_crnn/db`` by default) and reused by later runs
   (:mod:`tf_crnn.tracking.server`).

Every secret a URL can carry (the password, and the query options
``tlsCertificateKeyFilePassword`` and ``authMechanismProperties``' ``AWS_SESSION_TOKEN``) is replaced by
``***`` (:func:`redact_url`, :func:`scrub`) wherever a URL is stored or printed. URLs are taken apart
with pymongo's own parser (``pymongo.uri_parser``: hosts, IPv6 literals, options), never by hand;
``mongodb+srv://`` URLs are read without resolving their DNS records.
"""
from __future__ import annotations

import os
import socket
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pymongo
from pymongo.errors import ConfigurationError, PyMongoError
from pymongo.uri_parser import split_hosts, split_options

ENV_URL = "TF_CRNN_MONGO_URL"
DEFAULT_DB_NAME = "tf_crnn"
TLS_FILE_OPTIONS = ("tlsCAFile", "tlsCertificateKeyFile", "tlsCRLFile")  # URL options that name a local file
# URL options whose whole value is secret; libpq (PostgreSQL URLs of tf-crnn sweep --storage) also takes the password
# and the client key's passphrase as query options.
SECRET_OPTIONS = ("tlsCertificateKeyFilePassword", "sslPEMKeyPassword", "password", "sslpassword")
SECRET_PROPERTIES = ("AWS_SESSION_TOKEN",)  # authMechanismProperties entries whose value is secret
SRV_SCHEME = "mongodb+srv://"


class TrackingError(RuntimeError):
    """The database cannot be reached or the embedded server cannot start."""


# ---- URLs ---------------------------------------------------------------------

def redact_url(url: str | None) -> str | None:
    """``url`` with every secret it carries as ``***``; the rest as written.

    ``mongodb://user:secret@host/db?tlsCertificateKeyFilePassword=pw`` ->
    ``mongodb://user:***@host/db?tlsCertificateKeyFilePassword=***``; ``AWS_SESSION_TOKEN:...`` inside
    ``authMechanismProperties`` likewise. A URL without secrets is returned unchanged.
    """
    if not url:
        return url
    parts = original = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{quote(unquote(parts.username or ''), safe='')}:***@{host}")
    if parts.query:
        parts = parts._replace(query="&".join(_redact_option(item) for item in parts.query.split("&")))
    # Rebuilt only when a secret was replaced: urlunsplit drops the empty host of sqlite:////abs/path.db.
    return url if parts == original else urlunsplit(parts)


def _redact_option(item: str) -> str:
    """One ``key=value`` of a URL's query with a secret value as ``***``."""
    key, sep, value = item.partition("=")
    if key.lower() in {o.lower() for o in SECRET_OPTIONS}:
        return f"{key}{sep}***"
    if key.lower() == "authmechanismproperties":
        props = [p.partition(":") for p in unquote(value).split(",")]
        return f"{key}{sep}" + quote(",".join(f"{k}:***" if k in SECRET_PROPERTIES else f"{k}{c}{v}"
                                              for k, c, v in props), safe=":,*")
    return item


def hosts(url: str) -> list[tuple[str, int | None]]:
    """The ``(host, port)`` pairs of a MongoDB URL, by pymongo's parser (IPv6 literals without brackets).

    The port of a ``mongodb://`` host defaults to 27017; a ``mongodb+srv://`` URL names one DNS name whose SRV
    records give the real hosts and ports, so its port is None (not resolved here: no DNS look-up).

    Raises:
        TrackingError: not a ``mongodb://`` or ``mongodb+srv://`` URL, or hosts pymongo cannot read.
    """
    srv = url.startswith(SRV_SCHEME)
    if not (srv or url.startswith("mongodb://")):
        raise TrackingError(f"{redact_url(url)} is not a MongoDB URL (mongodb://HOST[:PORT]/ or "
                            f"mongodb+srv://NAME/): fix mongo_url / ${ENV_URL}")
    netloc = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    try:
        found = split_hosts(netloc, default_port=None if srv else 27017)
    except (ConfigurationError, ValueError) as e:
        raise TrackingError(f"{redact_url(url)} is not a usable MongoDB URL ({scrub(str(e), url_secrets(url))}): "
                            f"fix mongo_url / ${ENV_URL}") from None
    return [(host, None if srv else port) for host, port in found]


def host_port(url: str) -> str | None:
    """``host:port`` of the first host of a ``mongodb://`` URL (Omniboard's ``-m``), IPv6 in brackets;
    None for a ``mongodb+srv://`` URL, whose port only its DNS records know."""
    host, port = hosts(url)[0]
    if port is None:
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
    options = {key.lower(): value for key, value in url_options(url).items()}
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
    """Whether the first host of ``url`` accepts TCP connections (False for an SRV name: no port to try)."""
    try:
        host, port = hosts(url)[0]
        if port is None:
            return False
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except (OSError, ValueError, TrackingError):
        return False


def url_options(url: str) -> dict[str, str]:
    """The query options of a MongoDB URL as pymongo reads them (names as written, values unquoted), unvalidated."""
    query = urlsplit(url).query
    if not query:
        return {}
    try:
        return {k: str(v) for k, v in split_options(query, validate=False, warn=False).items()}
    except (ConfigurationError, ValueError):
        return {}  # pymongo's own connection attempt then names the problem


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
    """Every secret of a URL (password, secret options), raw and percent-encoded (empty when there is none)."""
    if not url:
        return ()
    found = []
    password = urlsplit(url).password
    if password:
        found.append(password)
    for key, value in url_options(url).items():
        if key.lower() in {o.lower() for o in SECRET_OPTIONS}:
            found.append(value)
        elif key.lower() == "authmechanismproperties":
            found += [v for k, _, v in (p.partition(":") for p in value.split(",")) if k in SECRET_PROPERTIES and v]
    return tuple(sorted({form for secret in found if secret
                         for form in (unquote(secret), secret, quote(unquote(secret), safe=""))}, key=len,
                        reverse=True))  # longest first: a secret that contains another is replaced whole
