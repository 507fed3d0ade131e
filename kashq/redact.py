"""Hiding the passwords of connection URLs, in the URLs and in messages quoting them.

Every URL kashq prints, logs or puts in an error goes through
:func:`hide_password`: the password of ``user:password@`` and the value of a
``password`` query parameter (how redis-py takes one for ``unix://`` sockets,
and libpq for any URL) become ``***``. No URL parser is trusted with this: a
password holding an unescaped ``/``, ``?`` or ``@`` makes parsers cut the URL
in the wrong place, so the credentials are taken to run to the *last* ``@``
(hiding too much, at worst, never too little).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

HIDDEN = "***"
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd)=)([^&#]*)", re.IGNORECASE)
_DELIMITERS = re.compile(r"[/?#@:&=]")
_MIN_PIECE = 4  # shorter pieces of a malformed password are not worth mangling messages for


def hide_password(url: str) -> str:
    """``url`` with its password (``user:password@``, ``?password=``) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo = _userinfo(rest)
    if userinfo is not None:
        user, _, host = userinfo
        rest = f"{user}:{HIDDEN}@{host}"
    return scheme + sep + _QUERY_PASSWORD.sub(rf"\g<1>{HIDDEN}", rest)


def hide_secrets_in(message: str, url: str) -> str:
    """``message`` with ``url``'s password, and any piece of it, replaced by ``***``.

    Parsers quote the pieces of a URL they cannot make sense of: redis-py says
    ``Port could not be cast to integer value as 's3cr3t'`` for the password
    ``s3cr3t/pw``.
    """
    for secret in sorted(_secrets(url), key=len, reverse=True):
        message = message.replace(secret, HIDDEN)
    return message


def _userinfo(rest: str) -> tuple[str, str, str] | None:
    """``(user, password, host...)`` of ``user:password@host...``; None without a password."""
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials or credentials.startswith("/"):  # a path, not a user
        return None
    user, _, password = credentials.partition(":")
    return user, password, host


def _secrets(url: str) -> set[str]:
    rest = url.partition("://")[2] or url
    passwords = [match.group(2) for match in _QUERY_PASSWORD.finditer(rest)]
    userinfo = _userinfo(rest)
    if userinfo is not None:
        passwords.append(userinfo[1])
    found = set()
    for password in filter(None, passwords):
        found |= {password, unquote(password)}
        found.update(piece for piece in _DELIMITERS.split(password) if len(piece) >= _MIN_PIECE)
    return found
