"""The policy language: YAML with line numbers, the ``retain`` and ``schedule`` phrases,
the frozen rules they become, and loading a policy file with every problem in one pass.

It knows nothing of databases or the daemon; it stands on the core modules only.
"""

from __future__ import annotations

from retention.policy.load import load_policy, load_policy_text

__all__ = ["load_policy", "load_policy_text"]
