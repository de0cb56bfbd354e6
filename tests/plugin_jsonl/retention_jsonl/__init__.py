"""An example plugin adapter for retention (entry point ``retention.adapters`` -> ``jsonl``)."""

from __future__ import annotations
