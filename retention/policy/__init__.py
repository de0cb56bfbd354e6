"""The policy language: YAML with line numbers, the ``retain`` and ``schedule`` phrases,
the frozen rules they become, and loading a policy file with every problem in one pass.

It knows nothing of databases or the daemon; it stands on the core modules only.
``load_policy`` and ``load_policy_text`` are imported when first used (PEP 562), so
importing ``retention.policy.rules`` does not load the YAML parser and the checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retention.policy.load import load_policy, load_policy_text

__all__ = ["load_policy", "load_policy_text"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'retention.policy' has no attribute {name!r}")
    from retention.policy import load

    return getattr(load, name)
