"""Local checks of everything the API would refuse, run before any request is sent.

Each failure is a ``ValidationError`` whose message says what to change. The callback
rules follow docs/api.md#callbacks (https only, at most 2048 characters, no internal
hosts) with the ranges of the OWASP SSRF cheat sheet (docs/reliability.md#callback-urls).
The ranges are listed by hand:
``ipaddress.is_global`` was wrong before Python 3.12.4 (CVE-2024-4032).

A host *name* that resolves to an internal address cannot be caught without DNS, which
would race with the provider's own lookup anyway; the provider enforces that side.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import SplitResult, urlsplit

from .._constants import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    IDEMPOTENCY_KEY_MIN_LENGTH,
    MAX_CALLBACK_URL_LENGTH,
    TASK_ID_PATTERN,
)
from .._exceptions import ValidationError

__all__ = [
    "is_internal_host",
    "is_loopback_host",
    "is_task_id",
    "validate_base_url",
    "validate_callback_url",
    "validate_idempotency_key",
    "validate_prompt",
    "validate_task_id",
    "validate_video_url",
]

_BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)
_BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(n) for n in ("::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8")
)
# IPv4 addresses wrapped in IPv6: unwrapped, then checked against the IPv4 ranges.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_TASK_ID_RE = re.compile(TASK_ID_PATTERN)
# A lone surrogate (half of a UTF-16 pair) has no UTF-8 form: the API could not read it,
# and the journal could not store it.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SPACE = re.compile(r"\s")
_IDEMPOTENCY_KEY_RE = re.compile(
    rf"[A-Za-z0-9._-]{{{IDEMPOTENCY_KEY_MIN_LENGTH},{IDEMPOTENCY_KEY_MAX_LENGTH}}}"
)
# The everyday clip URL (http(s), a plain ASCII host, maybe a port, then no whitespace):
# a shape ``_split`` always accepts, checked in one match instead of an uncached urlsplit
# and two property parses, on every input of a batch. Anything else takes ``_split``.
_PLAIN_HTTP_URL = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::([0-9]{1,5}))?(?:[/?#][^\s\ud800-\udfff]*)?"
)


def _parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` denotes, including the short and numeric IPv4 spellings that
    resolvers accept (``127.1``, ``2130706433``, ``0x7f.0.0.1``)."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fA-FxX.]+", host) and not host.endswith(".."):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _unwrap(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def _host_name(host: str) -> str:
    return host.lower().rstrip(".")


def is_internal_host(host: str) -> bool:
    """True for ``localhost`` and any literal address in a loopback, private, link-local,
    unique-local, shared, benchmark, multicast or reserved range (IPv4 or IPv6)."""
    name = _host_name(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    ip = _parse_ip(name)
    if ip is None:
        return False
    v4 = _unwrap(ip)
    if v4 is not None:
        return any(v4 in net for net in _BLOCKED_V4)
    return any(ip in net for net in _BLOCKED_V6)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``: hosts plain http may reach."""
    name = _host_name(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    ip = _parse_ip(name)
    if ip is None:
        return False
    v4 = _unwrap(ip)
    return v4.is_loopback if v4 is not None else ip.is_loopback


def _split(url: object, field: str, what: str) -> tuple[str, SplitResult, str]:
    """The URL, its parts and its host, or ``ValidationError``."""
    if not isinstance(url, str):
        raise ValidationError(f"{what} must be a string, not {type(url).__name__}", field=field)
    if not url or _SPACE.search(url):
        raise ValidationError(f"{what} must be a URL without spaces, got {url!r}", field=field)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValidationError(f"{what} is not a valid URL: {exc}", field=field) from None
    if not host:
        raise ValidationError(f"{what} has no host: {url!r}", field=field)
    return url, parts, host


def _check_text(text: str, field: str) -> str:
    if _SURROGATE.search(text):
        raise ValidationError(
            f"{field} holds a lone surrogate (an unpaired UTF-16 half, such as '\\ud800')"
            " that has no UTF-8 form: fix the text's encoding",
            field=field,
        )
    return text


def validate_video_url(url: object) -> str:
    """The clip's URL: http(s), with a host. Returns it unchanged."""
    if type(url) is str and (plain := _PLAIN_HTTP_URL.fullmatch(url)) is not None:
        port = plain.group(1)
        if port is None or int(port) <= 65535:
            return url
    url, parts, _ = _split(url, "video_url", "video_url")
    if parts.scheme not in ("http", "https"):
        raise ValidationError(
            f"video_url must start with http:// or https://, got scheme {parts.scheme!r}:"
            " upload the mp4 somewhere the API can fetch it",
            field="video_url",
        )
    return _check_text(url, "video_url")


def validate_prompt(prompt: object) -> str:
    """A non-empty string. Returns it unchanged."""
    if not isinstance(prompt, str):
        raise ValidationError(
            f"prompt must be a string, not {type(prompt).__name__}", field="prompt"
        )
    if not prompt.strip():
        raise ValidationError(
            "prompt is empty: describe what to change and what to keep, e.g. 'Make the"
            " lighting warmer and keep everything else unchanged'",
            field="prompt",
        )
    return _check_text(prompt, "prompt")


def validate_callback_url(url: object, *, allow_loopback_http: bool = False) -> str:
    """An https URL of at most 2048 characters whose host is not internal.

    ``allow_loopback_http`` admits ``http://`` to loopback hosts, for a local emulator
    and its tests only; the real API refuses such URLs.
    """
    url, parts, host = _split(url, "callback_url", "callback_url")
    _check_text(url, "callback_url")
    if len(url) > MAX_CALLBACK_URL_LENGTH:
        raise ValidationError(
            f"callback_url is {len(url)} characters long; the API accepts at most"
            f" {MAX_CALLBACK_URL_LENGTH}",
            field="callback_url",
        )
    if allow_loopback_http and is_loopback_host(host) and parts.scheme in ("http", "https"):
        return url
    if parts.scheme != "https":
        raise ValidationError(
            f"callback_url must use https://, got {parts.scheme!r}", field="callback_url"
        )
    if is_internal_host(host):
        raise ValidationError(
            f"callback_url points at an internal address ({host}); the API only"
            " calls public hosts: expose your receiver on a public https URL",
            field="callback_url",
        )
    return url


def validate_base_url(url: object) -> str:
    """The API's base URL: https, or plain http to a loopback host. Returns it without a
    trailing slash."""
    url, parts, host = _split(url, "base_url", "base_url")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ValidationError(
            f"base_url {url!r} uses plain http to a non-loopback host: the API key would"
            " cross the network unencrypted; use https://",
            field="base_url",
        )
    if parts.scheme not in ("http", "https"):
        raise ValidationError(f"base_url must be http(s), got {parts.scheme!r}", field="base_url")
    if parts.query or parts.fragment:
        raise ValidationError("base_url must not have a query or fragment", field="base_url")
    return url.rstrip("/")


def is_task_id(value: str) -> bool:
    """Whether ``value`` is a task id the SDK accepts: 1 to 128 characters of
    ``[A-Za-z0-9._:-]``, and not ``.`` or ``..``, so that it is one safe segment in a URL
    path and a safe file name (docs/api.md#read-a-task)."""
    return _TASK_ID_RE.fullmatch(value) is not None and value not in (".", "..")


def validate_task_id(task_id: object) -> str:
    """A task id as the server may issue it (see ``is_task_id``). Returns it unchanged."""
    if not isinstance(task_id, str):
        raise ValidationError(
            f"task id must be a string, not {type(task_id).__name__}", field="task_id"
        )
    if not is_task_id(task_id):
        raise ValidationError(
            f"{task_id[:140]!r} is not a task id: ids are 1 to 128 letters, digits, '.',"
            " '_', ':' and '-', such as 'task-unified-1757169743-7cvnl5zw'",
            field="task_id",
        )
    return task_id


def validate_idempotency_key(key: object) -> str:
    """An ``Idempotency-Key`` the gateway accepts: 16 to 96 characters of
    ``[A-Za-z0-9._-]`` (docs/api.md#idempotency-keys)."""
    if not isinstance(key, str):
        raise ValidationError(
            f"idempotency_key must be a string, not {type(key).__name__}",
            field="idempotency_key",
        )
    if not _IDEMPOTENCY_KEY_RE.fullmatch(key):
        raise ValidationError(
            f"idempotency_key must be {IDEMPOTENCY_KEY_MIN_LENGTH} to"
            f" {IDEMPOTENCY_KEY_MAX_LENGTH} characters of letters, digits, '.', '_' and"
            f" '-', got {len(key)} characters: {key[:40]!r}",
            field="idempotency_key",
        )
    return key
