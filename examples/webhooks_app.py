"""Webhooks in one file: signed Stripe and GitHub deliveries become jobs.

Importing this module registers two routes on ``kashq.webhooks.default_handler``;
``kashq webhooks:serve`` serves them and ``kashq queue:work`` runs the jobs::

    kashq webhooks:serve --import examples/webhooks_app.py --port 8080
    kashq queue:work --import examples/webhooks_app.py

Run ``python examples/webhooks_app.py`` to see it all at once: it starts the
server, sends it a signed Stripe event (twice: the redelivery is not queued
again) and a forged one, stops it, and works the queue. It uses the default
connection (``kashq.sqlite`` in the working directory). The secrets come from
``STRIPE_WEBHOOK_SECRET`` / ``GITHUB_WEBHOOK_SECRET`` (demo values otherwise).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import kashq
from kashq import Envelope, webhooks

STRIPE_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "whsec_demo")
GITHUB_SECRET = os.environ.get("GITHUB_WEBHOOK_SECRET", "github-demo")


class GitHubPush(webhooks.WebhookJob):
    """A class-based webhook job: its fields are the webhook payload."""

    queue = "webhooks"

    def handle(self) -> None:
        repo = self.body.get("repository", {}).get("full_name")
        print(f"      push to {repo} ({self.header('X-GitHub-Event')})", flush=True)


@kashq.handler("handle_stripe_event")
def handle_stripe_event(envelope: Envelope) -> None:
    """A named handler: the same payload, as a dict or a WebhookPayload."""
    event = envelope.payload_as(webhooks.WebhookPayload)
    print(f"      stripe {event.body['type']} {event.delivery_id}", flush=True)


webhooks.register_job_webhook(
    "/stripe", "handle_stripe_event", secret=STRIPE_SECRET, verifier="stripe"
)
webhooks.register_job_webhook("/github", GitHubPush, secret=GITHUB_SECRET, verifier="github")


def send_stripe_event(url: str, event: dict[str, Any], secret: str = STRIPE_SECRET) -> str:
    """POST ``event`` signed as Stripe signs it; returns the status and answer."""
    body = json.dumps(event).encode()
    t = int(time.time())
    signature = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"Stripe-Signature": f"t={t},v1={signature}", "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return f"{response.status} {response.read().decode()}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read().decode()}"


def main() -> None:
    this_file = os.path.relpath(__file__)
    server = subprocess.Popen(
        [sys.executable, "-m", "kashq", "webhooks:serve", "--import", this_file, "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    base = ""
    for line in server.stdout:
        print(line, end="", flush=True)
        if "listening on " in line:
            base = line.split("listening on ")[1].strip()
            break
    if not base:
        raise SystemExit("the server did not start")
    event = {"id": "evt_demo_1", "type": "invoice.paid", "data": {"object": {}}}
    print("\nA signed Stripe event, its redelivery, and a forged one:")
    for secret in (STRIPE_SECRET, STRIPE_SECRET, "whsec_forged"):
        print("   ", send_stripe_event(f"{base}/stripe", event, secret), flush=True)
    server.send_signal(signal.SIGINT)
    server.wait(30)
    print("\n$ kashq queue:work --stop-when-empty --queue default,webhooks", flush=True)
    subprocess.run(
        [sys.executable, "-m", "kashq", "queue:work", "--import", this_file,
         "--queue", "default,webhooks", "--stop-when-empty"],
        check=False,
    )  # fmt: skip


if __name__ == "__main__":
    main()
