"""The daemon: every rule on its schedule, slot claims, heartbeats, status and metrics.

The only room that imports APScheduler (in ``scheduler.py``); it turns each rule's
``Schedule`` into a trigger and runs the rule through :mod:`retention.run`.
"""

from __future__ import annotations
