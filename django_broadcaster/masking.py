"""Keeping secrets out of output: ``LOCATION`` passwords in logs, ``repr`` and errors."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

_PASSWORD_PARAM = re.compile(r"(password=)([^&]*)", re.IGNORECASE)


def mask_password(location: str) -> str:
    """``location`` with any password replaced by ``***``, safe for logs and output."""
    try:
        parts = urlsplit(location)
        password = parts.password
    except ValueError:
        return "<unparsable location>"
    if password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:" if parts.username else ":"
        parts = parts._replace(netloc=f"{user}***@{host}")
    query = _PASSWORD_PARAM.sub(r"\1***", parts.query)
    return urlunsplit(parts._replace(query=query))


def redact(text: str, location: str) -> str:
    """``text`` (an error message, say) with the password of ``location`` masked."""
    try:
        parts = urlsplit(location)
        secrets = [parts.password, *(value for _, value in _PASSWORD_PARAM.findall(parts.query))]
    except ValueError:
        return text
    for secret in secrets:
        for form in {secret, unquote(secret or "")}:
            if form:
                text = text.replace(form, "***")
    return text
