"""The example policies (YAML) and their schemas (SQL), installed as ``retention.policies``.

Package data: :mod:`retention.policies.examples` finds them with :mod:`importlib.resources`, so
``retention demo`` works from an installed wheel as well as from a source checkout.
"""

from __future__ import annotations
