"""Who may see the dashboard and who may act on it; CSRF and the headers every page carries.

* **Authentication.** With a token (``--token`` / ``KASHQ_DASHBOARD_TOKEN``) a
  request carries ``Authorization: Bearer <token>`` or the session cookie the
  login form sets (an HMAC of the token: no state on the server, and changing
  the token ends every session). With a user and password, HTTP Basic. A mounted
  dashboard may add an ``authorize(request)`` hook answering ``"write"``,
  ``"read"``, ``True`` (write) or ``False``/``None`` (refused). With none of
  these configured, only this machine (a loopback client) is served.
* **Read-only.** ``read_only`` (or a hook answering ``"read"``) shows every
  screen and refuses every action.
* **CSRF.** Every action is a POST carrying the ``csrf`` field, which must equal
  the ``kashq_csrf`` cookie (SameSite=Strict, HttpOnly; a random value per
  browser); a POST whose ``Origin`` names another site is refused too.
* **Headers.** A Content-Security-Policy allowing only the dashboard's own
  script and stylesheet (no inline script can run, whatever a payload holds),
  ``nosniff``, no framing, no caching of pages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from kashq.dashboard.http import Request, Response

Access = Literal["none", "read", "write"]
Authorize = Callable[[Request], "bool | str | None"]
SESSION_COOKIE = "kashq_session"
CSRF_COOKIE = "kashq_csrf"
CSRF_FIELD = "csrf"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class DashboardOptions:
    """How a dashboard is guarded and refreshed.

    ``token``: a shared secret (Bearer header or the login form). ``username`` and
    ``password``: HTTP Basic. ``authorize``: a hook of the app the dashboard is
    mounted in (see the module docstring). ``read_only``: no actions.
    ``refresh_s``: how often an open screen updates itself (0: never).
    """

    token: str | None = None
    username: str | None = None
    password: str | None = None
    authorize: Authorize | None = None
    read_only: bool = False
    refresh_s: float = 3.0

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise ValueError("a dashboard user needs both a username and a password")
        if self.token is not None and len(self.token) < 16:
            raise ValueError("a dashboard token must be at least 16 characters")
        if self.refresh_s < 0:
            raise ValueError(f"refresh_s must be 0 or more, got {self.refresh_s!r}")

    @property
    def guarded(self) -> bool:
        """Whether anything but a loopback address is allowed in."""
        return self.token is not None or self.username is not None or self.authorize is not None


class Guard:
    """Applies :class:`DashboardOptions` to each request."""

    def __init__(self, options: DashboardOptions) -> None:
        self.options = options
        self._session = (
            None
            if options.token is None
            else hmac.new(
                options.token.encode(), b"kashq-dashboard-session", hashlib.sha256
            ).hexdigest()
        )

    def access(self, request: Request) -> Access | Response:
        """What ``request`` may do, or the response refusing it (401, or a login redirect)."""
        options = self.options
        if not options.guarded:
            if not from_this_machine(request):
                return Response.text(
                    "this dashboard serves only this machine: configure a token, a user or "
                    "an authorize hook to open it to others",
                    403,
                )
            return "read" if options.read_only else "write"
        credentials = options.token is not None or options.username is not None
        if credentials and not self._authenticated(request):
            return self._challenge(request)
        level: Access = "read" if options.read_only else "write"
        if options.authorize is not None:
            answer = options.authorize(request)
            if answer is True or answer == "write":
                pass
            elif answer == "read":
                level = "read"
            else:
                return Response.text("not allowed", 403)
        return level

    def _authenticated(self, request: Request) -> bool:
        options = self.options
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if options.token is not None:
            if scheme == "bearer" and _same(value.strip(), options.token):
                return True
            cookie = request.cookies().get(SESSION_COOKIE, "")
            if self._session is not None and _same(cookie, self._session):
                return True
        if options.username is not None and options.password is not None and scheme == "basic":
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return _same(user, options.username) & _same(password, options.password)
        return False

    def _challenge(self, request: Request) -> Response:
        if self.options.username is not None:
            return Response.text("authentication required", 401).header(
                "www-authenticate", 'Basic realm="kashq dashboard", charset="UTF-8"'
            )
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return Response.redirect(request.url("/login"))
        return Response.text("authentication required", 401)

    def login(self, request: Request, token: str) -> Response | None:
        """Set the session cookie if ``token`` is the token; None if it is not."""
        if self.options.token is None or self._session is None:
            return None
        if not _same(token.strip(), self.options.token):
            return None
        response = Response.redirect(request.url("/"))
        return response.header("set-cookie", _cookie(request, SESSION_COOKIE, self._session))


def csrf_token(request: Request) -> tuple[str, bool]:
    """The browser's CSRF token, and whether it is new (then send it with :func:`csrf_cookie`)."""
    known = request.cookies().get(CSRF_COOKIE, "")
    if len(known) == 64 and all(c in "0123456789abcdef" for c in known):
        return known, False
    return secrets.token_hex(32), True


def csrf_cookie(request: Request, token: str) -> str:
    return _cookie(request, CSRF_COOKIE, token)


def bearer(request: Request) -> bool:
    """Whether ``request`` carries a Bearer token (a script: browsers never send one by
    themselves, so no other site can make a browser send it)."""
    return request.headers.get("authorization", "").lower().startswith("bearer ")


def csrf_refusal(request: Request, form: dict[str, list[str]]) -> str | None:
    """Why a POST fails the CSRF checks (None: it passes)."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
        return "the request came from another site"  # "null" (a sandboxed frame) included
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return "the request came from another site"
    cookie = request.cookies().get(CSRF_COOKIE, "")
    sent = (form.get(CSRF_FIELD) or [""])[0]
    if not cookie or not _same(sent, cookie):
        return "the form has expired: reload the page and try again"
    return None


def secure_headers(response: Response, *, page: bool) -> Response:
    response.headers += [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
    ]
    if page:
        response.headers.append(("cache-control", "no-store"))
    return response


_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
_PROXIED = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")


def from_this_machine(request: Request) -> bool:
    """Whether ``request`` comes from this machine and names it: a loopback client, with a
    ``Host`` of localhost (a web page whose domain was made to point here names another
    host), and not passed on by a proxy (whose visitors all come from loopback)."""
    if not is_loopback(request.client) or any(h in request.headers for h in _PROXIED):
        return False
    host = request.headers.get("host", "localhost").lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in _LOCAL_HOSTS


def is_loopback(client: str | None) -> bool:
    """Whether ``client`` (an IP address) is this machine."""
    if not client:
        return False
    try:
        return ipaddress.ip_address(client.split("%")[0]).is_loopback
    except ValueError:
        return False


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _cookie(request: Request, name: str, value: str) -> str:
    path = request.base or "/"
    secure = "; Secure" if request.scheme == "https" else ""
    return f"{name}={value}; Path={path}; HttpOnly; SameSite=Strict{secure}"
