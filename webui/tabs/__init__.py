"""The page's tabs, in the order they show. Each is a module with ID, TITLE (an i18n key), render(ui) and
wire(ui); a new tab is a new module here plus one line in TABS."""

from __future__ import annotations

from . import chat, data, export, monitor, presets, runs, train

TABS = [train, monitor, runs, data, presets, chat, export]
