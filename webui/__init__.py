"""tunedeck's page. `build(runs_root)` returns the gr.Blocks; importing this package never imports torch."""

from __future__ import annotations

from typing import Any


def build(runs_root: Any = None, **kwargs: Any):
    """The whole page (see webui/page.py); imported lazily so `import webui` stays cheap."""
    from .page import build as build_page

    return build_page(runs_root, **kwargs)


__all__ = ["build"]
