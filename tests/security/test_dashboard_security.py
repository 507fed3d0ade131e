"""The dashboard's guards: who may see it, who may act, CSRF, escaping, secrets, headers."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pydantic
import pytest

from kashq import Job, QueueManager
from kashq.config import load_settings
from kashq.dashboard import DashboardOptions
from kashq.dashboard.core import Dashboard
from kashq.dashboard.http import Request
from tests.support.dashboard import CSRF, get, post, text

TOKEN = "s3cret-token-of-the-team"
AWAY = "203.0.113.9"  # a client on another machine


class Signup(Job):
    email: str
    password: str = ""
    profile: dict[str, str] = pydantic.Field(default_factory=dict)

    def handle(self) -> None:
        pass


@pytest.fixture
def manager() -> Iterator[QueueManager]:
    made = QueueManager(load_settings(connection="memory"))
    yield made
    made.close()


def test_without_credentials_only_this_machine_is_served(manager: QueueManager) -> None:
    dash = Dashboard(manager)
    assert get(dash, "/").status == 200
    assert get(dash, "/", client="::1").status == 200
    refused = get(dash, "/", client=AWAY)
    assert refused.status == 403 and "configure a token" in text(refused)
    assert post(dash, "pause", {"queue": "mail"}, client=AWAY).status == 403
    assert manager.paused() == {}


def test_this_machine_means_a_loopback_client_naming_this_machine_without_a_proxy(
    manager: QueueManager,
) -> None:
    dash = Dashboard(manager)
    assert get(dash, "/", host="127.0.0.1:8000").status == 200
    assert get(dash, "/", host="[::1]:8000", client="::1").status == 200
    # A web page whose domain was pointed at 127.0.0.1 (DNS rebinding) names its own host.
    rebound = post(dash, "pause", {"queue": "q"}, host="rebind.example:8000",
                   origin="http://rebind.example:8000")  # fmt: skip
    assert rebound.status == 403
    # Behind a proxy on this machine, every visitor comes from loopback: not enough.
    assert get(dash, "/", **{"x-forwarded-for": "203.0.113.9"}).status == 403
    assert get(dash, "/", forwarded="for=203.0.113.9").status == 403
    assert manager.paused() == {}


def test_a_token_is_needed_from_anywhere_and_signing_in_sets_a_session(
    manager: QueueManager,
) -> None:
    dash = Dashboard(manager, options=DashboardOptions(token=TOKEN))
    assert get(dash, "/").status == 401
    assert get(dash, "/", accept="text/html").status == 303  # to the login form
    assert get(dash, "/", authorization="Bearer wrong-token-wrong-token").status == 401
    assert get(dash, "/", client=AWAY, authorization=f"Bearer {TOKEN}").status == 200
    assert post(dash, "/login", {"token": "nope"}).status == 401
    signed = post(dash, "/login", {"token": TOKEN})
    assert signed.status == 303
    cookie = dict(signed.headers)["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    session = cookie.split(";")[0]
    assert get(dash, "/", client=AWAY, cookie=f"{session}; kashq_csrf={CSRF}").status == 200
    assert post(dash, "/login", {"token": TOKEN}, csrf=None).status == 401  # CSRF on login too


def test_basic_auth_checks_user_and_password(manager: QueueManager) -> None:
    dash = Dashboard(manager, options=DashboardOptions(username="ops", password="pw-123"))

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    challenge = get(dash, "/", client=AWAY)
    assert challenge.status == 401 and "www-authenticate" in dict(challenge.headers)
    assert get(dash, "/", client=AWAY, authorization=basic("ops", "nope")).status == 401
    assert get(dash, "/", client=AWAY, authorization=basic("ops", "pw-123")).status == 200
    assert get(dash, "/", authorization="Basic !!!").status == 401


def test_read_only_shows_everything_and_refuses_every_action(manager: QueueManager) -> None:
    manager.dispatch(Signup(email="a@example.com").on_queue("mail"))
    dash = Dashboard(manager, options=DashboardOptions(read_only=True))
    page = text(get(dash, "/"))
    assert "mail" in page and "read-only" in page and 'data-action="pause"' not in page
    refused = post(dash, "pause", {"queue": "mail"})
    assert refused.status == 403 and manager.paused() == {}


def test_an_authorize_hook_decides_per_request(manager: QueueManager) -> None:
    def authorize(request: Request) -> bool | str:
        role = request.headers.get("x-role")
        return {"admin": True, "viewer": "read"}.get(role or "", False)

    dash = Dashboard(manager, options=DashboardOptions(authorize=authorize))
    assert get(dash, "/", client=AWAY).status == 403
    assert get(dash, "/", client=AWAY, **{"x-role": "viewer"}).status == 200
    assert post(dash, "pause", {"queue": "q"}, client=AWAY, **{"x-role": "viewer"}).status == 403
    assert post(dash, "pause", {"queue": "q"}, client=AWAY, **{"x-role": "admin"}).status == 303
    assert "q" in manager.paused()


def test_every_action_needs_the_csrf_token_and_the_same_origin(manager: QueueManager) -> None:
    dash = Dashboard(manager)
    assert post(dash, "pause", {"queue": "mail"}, csrf=None).status == 403
    assert post(dash, "pause", {"queue": "mail"}, csrf="d" * 64).status == 403
    cross = post(dash, "pause", {"queue": "mail"}, origin="https://evil.example")
    assert cross.status == 403 and "another site" in text(cross)
    assert post(dash, "pause", {"queue": "mail"}, origin="null").status == 403  # sandboxed frame
    sibling = post(dash, "pause", {"queue": "mail"}, **{"sec-fetch-site": "same-site"})
    assert sibling.status == 403  # a sibling subdomain that planted its own cookie
    assert manager.paused() == {}
    assert post(dash, "pause", {"queue": "mail"}, origin="http://localhost:8000").status == 303
    assert get(dash, "/actions/pause").status == 405  # never a GET


def test_a_script_with_the_bearer_token_acts_without_a_csrf_token(manager: QueueManager) -> None:
    dash = Dashboard(manager, options=DashboardOptions(token=TOKEN))
    signed = post(dash, "pause", {"queue": "mail"}, csrf=None, authorization=f"Bearer {TOKEN}")
    assert signed.status == 303 and "mail" in manager.paused()
    session = dict(post(dash, "/login", {"token": TOKEN}).headers)["set-cookie"].split(";")[0]
    by_cookie = post(dash, "resume", {"queue": "mail"}, csrf=None, cookie=session)
    assert by_cookie.status == 403  # a browser's session still needs the CSRF token


def test_an_odd_cookie_of_the_host_app_hides_none_of_the_dashboard_s(
    manager: QueueManager,
) -> None:
    dash = Dashboard(manager)
    cookie = f'pref={{"a": 1, "b": 2}}; theme="dark mode"; kashq_csrf={CSRF}'
    assert post(dash, "pause", {"queue": "mail"}, cookie=cookie).status == 303


def test_bad_query_strings_are_a_400_never_a_500(manager: QueueManager) -> None:
    dash = Dashboard(manager)
    for path in ("/failed?cursor=99999999999999999999999", "/failed?since=0001-01-01T00:00+14:00",
                 "/failed?until=yesterday", "/jobs?id=../../admin", "/jobs?state=nope",
                 "/jobs?cursor=garbage", "/batches?before=soon", "/metrics?by=color"):  # fmt: skip
        assert get(dash, path).status == 400, path
    forget = post(dash, "failed-forget", {"ids": ["9" * 30]})
    assert "select%20some%20failed%20jobs%20first" in dict(forget.headers)["location"]


def test_a_new_browser_gets_a_csrf_cookie_and_the_forms_carry_it(manager: QueueManager) -> None:
    manager.dispatch(Signup(email="a@example.com").on_queue("mail"))
    dash = Dashboard(manager)
    first = dash(Request("GET", "/", headers={"host": "localhost:8000"}, client="127.0.0.1"))
    cookie = dict(first.headers)["set-cookie"]
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) == 64 and "HttpOnly" in cookie
    assert f'name="csrf" value="{token}"' in first.body.decode()


def test_payloads_are_escaped_and_their_secrets_never_shown(manager: QueueManager) -> None:
    evil = "<script>alert('owned')</script>"
    job = Signup(email=evil, password="hunter2", profile={"api_key": "k-999", "city": "Oslo"})
    job_id = manager.dispatch(job.on_queue("mail"))
    dash = Dashboard(manager)
    for path in (f"/jobs/{job_id}", "/jobs?state=ready&queue=mail", "/"):
        body = text(get(dash, path))
        assert "<script>alert" not in body
    detail = text(get(dash, f"/jobs/{job_id}"))
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in detail
    assert "hunter2" not in detail and "k-999" not in detail and "Oslo" in detail


def test_every_response_carries_a_strict_content_security_policy(manager: QueueManager) -> None:
    dash = Dashboard(manager)
    for response in (get(dash, "/"), get(dash, "/nope"), get(dash, "/static/dashboard.js")):
        headers = dict(response.headers)
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
    assert get(dash, "/static/../app.py").status == 404


def test_an_action_only_returns_to_a_page_of_the_dashboard(manager: QueueManager) -> None:
    dash = Dashboard(manager)
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        answer = post(dash, "pause", {"queue": "mail", "next": target})
        assert dict(answer.headers)["location"].startswith("/?note=")


def test_bad_options_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        DashboardOptions(token="short")
    with pytest.raises(ValueError, match="both a username and a password"):
        DashboardOptions(username="ops")
