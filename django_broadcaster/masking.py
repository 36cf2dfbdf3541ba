"""Keeping secrets out of output: passwords in ``LOCATION``, in ``OPTIONS`` and in
any text (logs, ``repr``, errors, Django's debug page)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

_PASSWORD_PARAM = re.compile(r"(password=)([^&]*)", re.IGNORECASE)
#: Names whose values are secrets: Django's own list (``SafeExceptionReporterFilter``)
#: and a few more. ``password``, ``ssl_password``, ``SIGNING_KEYS``, ``api_token``...
_SECRET_NAME = re.compile("API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|CREDENTIAL|PRIVATE", re.I)
#: A URL in free text (stops at whitespace, quotes and brackets around it).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>(){},]+")
#: ``password=VALUE`` in free text: a conninfo string, a repr, a URL query.
_PASSWORD_PAIR = re.compile(r"""(password\s*=\s*)('[^']*'|"[^"]*"|[^\s&'",)]+)""", re.I)
MASK = "***"


def mask_password(location: str) -> str:
    """``location`` with any password replaced by ``***``, safe for logs and output
    (each URL of a ``LOCATION`` given as a list, which arrives space-separated)."""
    if " " in location.strip():
        return " ".join(mask_password(part) for part in location.split())
    try:
        parts = urlsplit(location)
        password = parts.password
    except ValueError:
        return "<unparsable location>"
    if password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:" if parts.username else ":"
        parts = parts._replace(netloc=f"{user}{MASK}@{host}")
    query = _PASSWORD_PARAM.sub(rf"\1{MASK}", parts.query)
    return urlunsplit(parts._replace(query=query))


def redact(text: str, location: str) -> str:
    """``text`` (an error message, say) with the password of ``location`` masked."""
    if " " in location.strip():
        for part in location.split():
            text = redact(text, part)
        return text
    try:
        parts = urlsplit(location)
        secrets = [parts.password, *(value for _, value in _PASSWORD_PARAM.findall(parts.query))]
    except ValueError:
        return text
    for secret in secrets:
        for form in {secret, unquote(secret or "")}:
            if form:
                text = text.replace(form, MASK)
    return text


def is_secret_name(name: object) -> bool:
    """Whether a setting, option or variable called ``name`` holds a secret."""
    return isinstance(name, str) and _SECRET_NAME.search(name) is not None


def mask_text(text: str) -> str:
    """``text`` with the password of every URL in it, and every ``password=...``, masked.

    For text of unknown origin (a setting, a ``repr``); other text is left as it is.
    """
    text = _URL.sub(lambda match: _mask_url(match.group()), text)
    return _PASSWORD_PAIR.sub(rf"\1{MASK}", text)


def _mask_url(url: str) -> str:
    try:
        has_password = urlsplit(url).password is not None
    except ValueError:  # a URL-looking fragment that does not parse: mask what may be a secret
        return re.sub(r"(://[^/@]*?:)[^/]*@", rf"\1{MASK}@", url)
    return mask_password(url) if has_password else url


def mask_options(value: Any) -> Any:
    """``OPTIONS`` (or any part of it) with every secret masked, for ``repr`` and output.

    Values under a secret-looking key (`is_secret_name`), at any depth, become
    ``***``; passwords in URL strings are masked.
    """
    if isinstance(value, Mapping):
        return {k: MASK if is_secret_name(k) else mask_options(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_options(v) for v in value]
    if isinstance(value, tuple):
        return tuple(mask_options(v) for v in value)
    if isinstance(value, str):
        return mask_text(value)
    return value
