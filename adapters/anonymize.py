"""Anonymization strategies, applied in Python to one value at a time.

Every strategy is idempotent: applying it to its own output gives the same
value, so a second run finds nothing left to change. NULL stays NULL.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from typing import Any

from retention.rules import REDACTED, ColumnAction, Strategy

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def truncate_ip(value: Any) -> str | None:
    """IPv4 to its /24 network address, IPv6 to its /48; anything else becomes NULL."""
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def keyed_hash(value: Any, key: bytes) -> str:
    """HMAC-SHA-256 of the value's text, as 64 hex digits; a digest is kept as it is."""
    text = str(value)
    if _HEX64.match(text):
        return text
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def apply(action: ColumnAction, value: Any) -> Any:
    """The anonymized form of ``value`` under ``action``."""
    if value is None:
        return None
    if action.strategy is Strategy.NULL:
        return None
    if action.strategy is Strategy.REDACT:
        return REDACTED
    if action.strategy is Strategy.FIXED:
        return action.value
    if action.strategy is Strategy.TRUNCATE_IP:
        return truncate_ip(value)
    key = os.environ.get(action.key_env or "", "")
    if not key:
        raise RuntimeError(f"environment variable {action.key_env} (the hash key) is not set")
    return keyed_hash(value, key.encode("utf-8"))


def same(old: Any, new: Any) -> bool:
    """Whether a stored value already equals its anonymized form."""
    if old is None or new is None:
        return old is new
    return str(old) == str(new)
