"""The ``retention`` command line (Click): every command, its options, and the demo.

``commands.py`` holds the group and the top-level commands, ``holds.py`` and
``audit.py`` the ``hold`` and ``audit`` groups, ``common.py`` what they share,
``demo.py`` the ``retention demo`` story. The console script is ``retention.cli:main``.
"""

from __future__ import annotations

from retention.cli.commands import cli, main

__all__ = ["cli", "main"]
