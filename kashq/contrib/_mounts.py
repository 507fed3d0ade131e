"""What the web framework helpers share: the check of a mount path."""

from __future__ import annotations


def mount_path(path: str) -> str:
    """``path`` checked: a mount point starts with ``/`` and is not the root."""
    if not path.startswith("/") or path.rstrip("/") == "":
        raise ValueError(f"a kashq mount path starts with / and is not the root, got {path!r}")
    return path.rstrip("/")
