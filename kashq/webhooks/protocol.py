"""uvicorn's HTTP protocol, answering the requests its parser refuses with kashq's JSON error.

uvicorn answers a request its HTTP parser cannot read (a ``Content-Length``
that is not a number, two that disagree, a malformed header line) itself,
before any ASGI app sees it, with a plain-text ``400 Invalid HTTP request
received.``. ``kashq webhooks:serve`` runs uvicorn with
:class:`JSONErrorsHTTPProtocol` instead, so such a request gets the JSON body
every other refusal has (docs/webhooks.md, Answers). Serving the handler with
uvicorn yourself, pass it the same way::

    uvicorn app:hooks.app --http kashq.webhooks.protocol:JSONErrorsHTTPProtocol

It extends the protocol uvicorn would choose (httptools if installed, else
h11), and needs uvicorn (``pip install 'kashq[webhooks]'``).
"""

from __future__ import annotations

import json
import sys

from uvicorn.protocols.http.auto import AutoHTTPProtocol

BAD_LENGTH = "bad Content-Length"  # what the handler answers for a length it sees itself
MALFORMED = "malformed HTTP request"


def refusal_reason(error: BaseException | None) -> str:
    """The short reason for the parser's ``error``: the same words the handler uses."""
    return BAD_LENGTH if "content-length" in str(error).lower() else MALFORMED


def refusal(reason: str) -> bytes:
    """The whole ``400`` answer with the body ``{"error": reason}``; the connection closes."""
    body = json.dumps({"error": reason}).encode()
    head = (
        b"HTTP/1.1 400 Bad Request\r\n"
        b"content-type: application/json\r\n"
        b"content-length: %d\r\n"
        b"connection: close\r\n\r\n"
    ) % len(body)
    return head + body


class JSONErrorsHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's HTTP protocol, with a JSON body on the 400 its parser answers."""

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this from the handler of the parser's error, and passes
        # a fixed text: the error itself says whether the length was the fault.
        self.transport.write(refusal(refusal_reason(sys.exc_info()[1])))
        self.transport.close()
