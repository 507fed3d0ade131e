"""``kashq webhooks:serve`` end to end: the installed executable serving real HTTP.

A module registers a GitHub route at import; the server turns a signed POST
into one job in the SQLite default, answers a redelivery with the same id,
refuses a forged one, and exits 0 on SIGTERM; ``queue:work`` then runs the job.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from kashq.cli import app as cli_app
from kashq.drivers.database import DatabaseDriver
from tests.e2e.conftest import Cli, assert_one_line_error
from tests.e2e.test_cli import _clean_env, _kashq_executable
from tests.support.services import free_port

SECRET = "e2e-secret"
HOOKS = """
    import json

    import kashq
    from kashq import webhooks

    webhooks.register_job_webhook("/github", "on_github", secret="e2e-secret", verifier="github")


    @kashq.handler("on_github")
    def on_github(envelope):
        with open("handled.jsonl", "a") as out:
            out.write(json.dumps(envelope.payload) + "\\n")
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "hooks_app.py").write_text(textwrap.dedent(HOOKS))
    return tmp_path


def env_for(app_dir: Path) -> dict[str, str]:
    return _clean_env() | {
        "KASHQ_DATABASE_URL": f"sqlite:///{app_dir / 'kashq.sqlite'}",
        "PYTHONUNBUFFERED": "1",
    }


def kashq(app_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = env_for(app_dir) | {"KASHQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    return subprocess.run(
        [str(_kashq_executable()), *args],
        cwd=app_dir, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def server(app_dir: Path) -> Iterator[tuple[subprocess.Popen[str], str, list[str]]]:
    """``kashq webhooks:serve --port 0`` running; yields it, its base URL and its banner."""
    proc = subprocess.Popen(
        [str(_kashq_executable()), "webhooks:serve", "--port", "0", "--import", "hooks_app.py"],
        cwd=app_dir, env=env_for(app_dir), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        banner: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            banner.append(line.rstrip())
            if "POST /webhooks/github" in line:
                break
        listening = [line for line in banner if "listening on http://" in line]
        assert listening, (banner, proc.poll(), proc.stderr and proc.stderr.read())
        yield proc, listening[0].split("listening on ")[1], banner
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def post(base: str, body: bytes, delivery: str, secret: str = SECRET) -> tuple[int, dict]:
    url = urlsplit(base)
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": f"sha256={signature}", "X-GitHub-Delivery": delivery}
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        conn.request("POST", url.path + "/github", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_serve_turns_a_signed_post_into_one_job_and_exits_0_on_sigterm(app_dir, server):
    proc, base, banner = server
    assert base.startswith("http://127.0.0.1:") and base.endswith("/webhooks")
    assert banner[0].startswith("kashq webhooks:serve · database (sqlite:///")
    assert banner[-1].split() == ["POST", "/webhooks/github", "→", "on_github"]

    body = b'{"action": "opened", "number": 7}'
    status, accepted = post(base, body, "d-1")
    again = post(base, body, "d-1")
    forged = post(base, body, "d-2", secret="wrong")
    driver = DatabaseDriver(f"sqlite:///{app_dir / 'kashq.sqlite'}")
    try:
        assert driver.sizes(["default"])["default"].ready == 1
    finally:
        driver.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert proc.stdout is not None and "Stopped." in proc.stdout.read()

    assert (status, accepted["duplicate"]) == (202, False)
    assert again == (202, {"id": accepted["id"], "duplicate": True})
    assert forged == (401, {"error": "invalid signature"})
    worked = kashq(app_dir, "queue:work", "--stop-when-empty", "--import", "hooks_app.py")
    assert worked.returncode == 0, worked.stdout + worked.stderr
    [handled] = (app_dir / "handled.jsonl").read_text().splitlines()
    payload = json.loads(handled)
    assert payload["body"] == json.loads(body)
    assert (payload["delivery_id"], payload["path"]) == ("d-1", "/github")


def test_serve_needs_routes_a_good_prefix_and_a_port_in_range(kashq_cli: Cli) -> None:
    line = assert_one_line_error(kashq_cli(["webhooks:serve", "--port", "0"]))
    assert "no webhook routes" in line and "--import" in line
    line = assert_one_line_error(kashq_cli(["webhooks:serve", "--prefix", "hooks"]))
    assert "a mount prefix starts with '/'" in line
    for port in ("70000", "-1", "http"):
        line = assert_one_line_error(kashq_cli(["webhooks:serve", "--port", port]))
        assert line == f"error: --port must be a port number (0-65535), got {port!r}"


def test_serve_without_uvicorn_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError
    result = CliRunner().invoke(cli_app, ["webhooks:serve"])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == "error: webhooks:serve needs uvicorn: pip install 'kashq[webhooks]'\n"


def test_serve_refuses_a_busy_port_a_bad_host_a_down_queue_and_a_broken_module(
    app_dir: Path,
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        taken = kashq(app_dir, "webhooks:serve", "--port", port, "--import", "hooks_app.py")
    assert taken.returncode == 1 and taken.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    foreign = kashq(app_dir, "webhooks:serve", "--host", "192.0.2.1", "-i", "hooks_app.py")
    assert foreign.returncode == 1 and len(foreign.stderr.strip().splitlines()) == 1
    assert "cannot listen on 192.0.2.1:8080" in foreign.stderr
    down = kashq(app_dir, "webhooks:serve", "redis", "-i", "hooks_app.py", "--port", "0")
    assert down.returncode == 1 and len(down.stderr.strip().splitlines()) == 1, down.stderr
    assert "Connection refused" in down.stderr and "Traceback" not in down.stderr
    (app_dir / "broken.py").write_text("raise RuntimeError('boom')\n")
    broken = kashq(app_dir, "webhooks:serve", "--import", "broken.py")
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    assert "cannot import job module 'broken.py': RuntimeError: boom" in broken.stderr


def raw_answer(base: str, head: bytes) -> tuple[int, str, bytes]:
    """Send ``head`` (request line and headers) as is; the status, content type and body."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head)
        data = b""
        while more := sock.recv(65536):  # the server closes after a refusal
            data += more
    head_text, _, body = data.partition(b"\r\n\r\n")
    lines = head_text.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers.get("content-type", ""), body


@pytest.mark.parametrize(
    ("header", "said"),
    [
        (b"Content-Length: abc", "bad Content-Length"),
        (b"Content-Length: -1", "bad Content-Length"),
        (b"Content-Length: 2\r\nContent-Length: 3", "bad Content-Length"),
        (b"Not A Header Line", "malformed HTTP request"),
    ],
    ids=["not-a-number", "negative", "conflicting", "bad-header-line"],
)
def test_serve_answers_a_request_its_http_parser_refuses_with_the_json_error(
    server, header: bytes, said: str
) -> None:
    _, base, _ = server
    path = urlsplit(base).path + "/github"
    head = b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n{}"

    status, content_type, body = raw_answer(base, head)

    assert (status, content_type) == (400, "application/json")
    assert json.loads(body) == {"error": said}
