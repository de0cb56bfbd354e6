"""What auditors and readers get: the dry-run report, the retention schedule, their formats.

``build.py`` gathers the report (due, held, due soon, samples, uncovered tables),
``statement.py`` renders the policy as a readable retention schedule through the
Jinja2 templates in ``templates/schedule/`` (layouts, and the words per language), and
``render.py`` holds the output formats they share.
"""

from __future__ import annotations
