"""What someone who can write to a queue's storage can put there: any text or bytes.

:class:`Forged` goes through a driver's ordinary ``push`` but is stored as
``raw``, byte for byte, in place of an encoded envelope: the same as writing
to Redis (or the jobs table) directly, without spelling the driver's keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kashq.envelope import Envelope


@dataclass(slots=True)
class Forged(Envelope):
    """An envelope whose stored text is ``raw``, whatever it holds."""

    raw: str | bytes = ""

    def encode(self) -> str:
        return self.raw  # type: ignore[return-value]  # bytes too: drivers pass them through


def forged(raw: str | bytes, job_id: str = "forged-1", queue: str = "default") -> Forged:
    """A job whose stored text is ``raw``, ready now on ``queue``."""
    return Forged(
        id=job_id, type="?", queue=queue, payload={}, created_at=0.0, available_at=0.0, raw=raw
    )


def envelope_text(type_name: str, payload: Any, job_id: str = "forged-1", **fields: Any) -> str:
    """A well-formed envelope as a writer with queue access would spell it by hand."""
    data = {
        "v": 1,
        "id": job_id,
        "type": type_name,
        "queue": "default",
        "payload": payload,
        "created_at": 1_700_000_000,
        "available_at": 1_700_000_000,
        **fields,
    }
    return json.dumps(data)
