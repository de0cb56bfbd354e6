"""Anonymization strategies, applied in Python to one value at a time.

Every strategy writes a canonical form that it maps to itself, and the
databases recognise exactly those forms (``sql_statements.pending``): a value
is changed if and only if it is not yet in anonymized form, so a second run
finds nothing left to do. NULL stays NULL.

* ``hash``: 64 lowercase hex digits (:data:`HEX64`); such a value is kept.
* ``truncate_ip`` on text: the network address of the /24 (IPv4) or /48 (IPv6)
  as :mod:`ipaddress` prints it (:data:`TRUNCATED_IP`); a value that is no
  address becomes NULL, or ``''`` in a NOT NULL column, and ``''`` is kept.
  On PostgreSQL ``inet`` values (read as ``IPv4Address``/``IPv4Interface``)
  the result is the /24 or /48 host address; ``cidr`` networks are widened to
  at most /24 or /48.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from typing import Any

from retention.actions import REDACTED, ColumnAction, Strategy

HEX64 = "[0-9a-f]{64}"  # what ``keyed_hash`` writes, as a regular expression
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"  # no leading zeros
_GROUP = "(?:0|[1-9a-f][0-9a-f]{0,3})"  # a hextet without leading zeros
_NONZERO = "[1-9a-f][0-9a-f]{0,3}"
# The /24 or /48 network address as ipaddress prints it: a.b.c.0, or up to three
# hextets and "::" (the trailing zero groups are the longest run, so they are
# compressed, together with a zero third or second group), or ''.
TRUNCATED_IP = (f"(?:{_OCTET}\\.{_OCTET}\\.{_OCTET}\\.0"
                f"|{_GROUP}:{_GROUP}:{_NONZERO}::|{_GROUP}:{_NONZERO}::|{_NONZERO}::|::|)")
PREFIX = {4: 24, 6: 48}  # what truncate_ip keeps of an IPv4 or IPv6 address

_HEX64 = re.compile(HEX64)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _network_address(address: Address) -> Address:
    """The first address of ``address``'s /24 or /48, without a zone id."""
    drop = address.max_prefixlen - PREFIX[address.version]
    kind = ipaddress.IPv4Address if address.version == 4 else ipaddress.IPv6Address
    return kind(int(address) >> drop << drop)


def truncate_ip(value: Any, not_null: bool = False) -> Any:
    """IPv4 to its /24 network address, IPv6 to its /48; anything else becomes NULL
    (``''`` when ``not_null``). ``''`` stays ``''``. Text stays text and ``ipaddress``
    objects (PostgreSQL ``inet`` and ``cidr``) stay objects."""
    if isinstance(value, Network):
        prefix = PREFIX[value.version]
        return value if value.prefixlen <= prefix else value.supernet(new_prefix=prefix)
    if isinstance(value, Interface):
        return _network_address(value.ip)
    if isinstance(value, Address):
        return _network_address(value)
    text = str(value)
    if text == "":
        return ""
    try:
        address = ipaddress.ip_interface(text.strip()).ip
    except ValueError:
        return "" if not_null else None
    return str(_network_address(address))


def keyed_hash(value: Any, key: bytes) -> str:
    """HMAC-SHA-256 of the value's text, as 64 hex digits; a digest is kept as it is."""
    text = str(value)
    if _HEX64.fullmatch(text):
        return text
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def apply(action: ColumnAction, value: Any, not_null: bool = False) -> Any:
    """The anonymized form of ``value`` under ``action``; ``not_null`` for a NOT NULL column."""
    if value is None:
        return None
    if action.strategy is Strategy.NULL:
        return None
    if action.strategy is Strategy.REDACT:
        return REDACTED
    if action.strategy is Strategy.FIXED:
        return action.value
    if action.strategy is Strategy.TRUNCATE_IP:
        return truncate_ip(value, not_null)
    key = os.environ.get(action.key_env or "", "")
    if not key:
        raise RuntimeError(f"environment variable {action.key_env} (the hash key) is not set")
    return keyed_hash(value, key.encode("utf-8"))


def same(old: Any, new: Any) -> bool:
    """Whether a stored value already equals its anonymized form (text exactly, other
    values by equality: ``Decimal('1.50')`` is the fixed value ``1.5``)."""
    if old is None or new is None:
        return old is new
    if isinstance(old, str) or isinstance(new, str):
        return str(old) == str(new)
    try:
        return bool(old == new)
    except (TypeError, ValueError):
        return str(old) == str(new)
