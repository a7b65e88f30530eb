"""tunedeck's page. `build(runs_root)` returns the gr.Blocks; importing this package never imports torch."""

from __future__ import annotations

from typing import Any


def build(runs_root: Any = None, **kwargs: Any):
    """The whole page (see webui/app.py); imported lazily so `import webui` stays cheap."""
    from .app import build as _build

    return _build(runs_root, **kwargs)


__all__ = ["build"]
