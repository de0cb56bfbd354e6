"""Checkpoints: the chain's head written outside the store, optionally signed.

With ``audit: {checkpoints: PATH}`` every run, hold change and replay (and
``retention audit checkpoint``) appends one JSON line to PATH::

    {"seq": 812, "head": "<hash of entry 812>", "at": "...", "run_id": "...",
     "policy": "webshop", "reason": "run", "signature": "ed25519:<base64>"}

The signature covers every other field (canonical JSON) and is made with the
Ed25519 private key in ``RETENTION_SIGNING_KEY`` (PEM text, or the path of a PEM
file); ``audit: {public_key: PEM-or-path}`` checks it. Someone who can write the
store but not PATH cannot roll the store back, truncate it or rewrite it with
recomputed hashes without the store disagreeing with a checkpoint: behind it (the
store ends before its seq) or forked from it (another entry at its seq).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from retention.audit.schema import head, log
from retention.audit.store import AuditStore, now_text
from retention.errors import AuditError
from retention.policy.needs import usable

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from retention.policy.rules import Policy

SIGNING_KEY_ENV = "RETENTION_SIGNING_KEY"  # the Ed25519 private key (PEM, or a PEM file's path)
SIGNATURE_PREFIX = "ed25519:"  # before the base64 of the 64-byte signature
LOOKUP_CHUNK = 500  # checkpoint seqs looked up per query


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One line of the checkpoint file."""

    seq: int
    head: str
    at: str
    run_id: str | None
    policy: str
    reason: str  # run, hold_added, hold_released, replay, manual
    signature: str | None = None
    line: int = 0  # its line in the file (1-based), 0 before it is written

    def body(self) -> dict[str, Any]:
        return {"seq": self.seq, "head": self.head, "at": self.at, "run_id": self.run_id,
                "policy": self.policy, "reason": self.reason}

    def payload(self) -> bytes:
        """What the signature covers: the canonical JSON of every field but the signature."""
        return json.dumps(self.body(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")

    def as_json(self) -> dict[str, Any]:
        return {**self.body(), "signature": self.signature}

    @property
    def name(self) -> str:
        return f"checkpoint at line {self.line} (entry {self.seq}, {self.at})"


def _pem(value: str, what: str) -> bytes:
    """PEM text as given, or read from the file ``value`` names."""
    if "-----BEGIN" in value:
        return value.strip().encode("ascii", errors="replace") + b"\n"
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise AuditError(f"{what}: cannot read the key file: {exc.strerror}") from None


def signing_key(env: dict[str, str] | None = None) -> Ed25519PrivateKey | None:
    """The private key in ``RETENTION_SIGNING_KEY``, or None when it is not set.

    Raises :class:`AuditError` (exit 2) when it is not an Ed25519 private key in PEM
    form; the message never holds the key.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    value = (os.environ if env is None else env).get(SIGNING_KEY_ENV, "")
    if not value.strip():
        return None
    try:
        key = load_pem_private_key(_pem(value, SIGNING_KEY_ENV), password=None)
    except (ValueError, TypeError):
        raise AuditError(f"{SIGNING_KEY_ENV} is not a PEM private key (unencrypted)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"{SIGNING_KEY_ENV} is not an Ed25519 private key")
    return key


def public_key(value: str) -> Ed25519PublicKey:
    """``audit: public_key``: PEM text or the path of a PEM file.

    Raises :class:`AuditError` (exit 2) when it is not an Ed25519 public key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(_pem(value, "audit: public_key"))
    except (ValueError, TypeError):
        raise AuditError("audit: public_key is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError("audit: public_key is not an Ed25519 public key")
    return key


def _verifies(key: Ed25519PublicKey, point: Checkpoint) -> bool:
    from cryptography.exceptions import InvalidSignature

    if not point.signature or not point.signature.startswith(SIGNATURE_PREFIX):
        return False
    try:
        raw = base64.b64decode(point.signature[len(SIGNATURE_PREFIX):], validate=True)
        key.verify(raw, point.payload())
    except (InvalidSignature, ValueError):
        return False
    return True


class Checkpoints:
    """The checkpoint file of a policy, with its keys."""

    def __init__(self, path: str, policy: str, signer: Ed25519PrivateKey | None = None,
                 verifier: Ed25519PublicKey | None = None) -> None:
        self.path = Path(path)
        self.policy = policy
        self.signer = signer
        self.verifier = verifier

    @classmethod
    def of(cls, policy: Policy, signing: bool = True,
           env: dict[str, str] | None = None) -> Checkpoints | None:
        """The policy's checkpoints, or None without ``audit: checkpoints``.

        ``signing``: load ``RETENTION_SIGNING_KEY`` too (commands that append). Raises
        :class:`AuditError` (exit 2) for a key that cannot be used, a signing key that
        does not match ``audit: public_key``, or none while ``public_key`` is set (its
        checkpoints would not verify).
        """
        if policy.checkpoints is None:
            return None
        path = usable(policy.checkpoints)
        verifier = None if policy.public_key is None else public_key(usable(policy.public_key))
        signer = signing_key(env) if signing else None
        if signing and signer is None and verifier is not None:
            raise AuditError(f"audit: public_key is set but {SIGNING_KEY_ENV} is not: "
                             "checkpoints written now would not verify")
        if signer is not None and verifier is not None:
            probe = b"retention checkpoint key check"
            try:
                verifier.verify(signer.sign(probe), probe)
            except Exception:
                raise AuditError(f"{SIGNING_KEY_ENV} does not match audit: public_key") from None
        return cls(path, policy.name, signer, verifier)

    # -- writing ------------------------------------------------------------------

    def ready(self) -> None:
        """Check that the file can be appended to (before a run changes anything).

        Raises :class:`AuditError` (exit 2)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise AuditError(f"cannot append to the checkpoint file {self.path}: "
                             f"{exc.strerror}") from None
        os.close(fd)

    def append(self, store: AuditStore, run_id: str | None, reason: str) -> Checkpoint:
        """Append the store's current chain head. Raises :class:`AuditError` (exit 1)."""
        with store.engine.connect() as conn:
            found = conn.execute(sa.select(head.c.seq, head.c.hash).where(head.c.id == 1)).first()
        seq, digest = (0, "0" * 64) if found is None else (int(found[0]), str(found[1]))
        point = Checkpoint(seq, digest, now_text(), run_id, self.policy, reason)
        if self.signer is not None:
            signature = base64.b64encode(self.signer.sign(point.payload())).decode("ascii")
            point = Checkpoint(**{**point.body(), "signature": SIGNATURE_PREFIX + signature})
        line = json.dumps(point.as_json(), sort_keys=False, separators=(", ", ": ")) + "\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode("utf-8"))  # one write: lines of runners never mix
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise AuditError(f"cannot append to the checkpoint file {self.path}: "
                             f"{exc.strerror}", exit_code=1) from None
        return point

    # -- reading and checking -----------------------------------------------------

    def read(self) -> tuple[list[Checkpoint], list[str]]:
        """The checkpoints in file order, and one problem per line that is no checkpoint."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return [], []
        except (OSError, UnicodeDecodeError) as exc:
            return [], [f"cannot read the checkpoint file {self.path}: {exc}"]
        points, problems = [], []
        for number, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
                points.append(Checkpoint(
                    seq=int(data["seq"]), head=str(data["head"]), at=str(data["at"]),
                    run_id=data.get("run_id"), policy=str(data.get("policy", "")),
                    reason=str(data.get("reason", "")), signature=data.get("signature"),
                    line=number))
            except (ValueError, KeyError, TypeError):
                problems.append(f"checkpoint file {self.path} line {number}: not a checkpoint")
        return points, problems

    def check(self, store: AuditStore, points: Iterable[Checkpoint] | None = None) -> list[str]:
        """Every way the store disagrees with the checkpoints (or a signature fails)."""
        problems: list[str] = []
        if points is None:
            read, problems = self.read()
            if not read and not problems and _last_seq(store) > 0:
                problems.append(f"checkpoint file {self.path} is missing or empty while the "
                                "store holds entries (run 'retention audit checkpoint' if "
                                "checkpoints were just configured)")
            points = read
        points = list(points)
        if self.verifier is not None:
            for point in points:
                if not _verifies(self.verifier, point):
                    why = "is not signed" if not point.signature else "has a signature that fails"
                    problems.append(f"{point.name} {why} (checked with audit: public_key)")
        last = _last_seq(store)
        hashes = _hashes(store, {p.seq for p in points if 0 < p.seq <= last})
        for point in points:
            if point.seq > last:
                problems.append(f"the store is behind the {point.name}: it ends at entry "
                                f"{last} (rolled back, truncated or restored from a copy)")
            elif point.seq > 0 and hashes.get(point.seq) != point.head:
                problems.append(f"the store differs from the {point.name}: entry {point.seq} "
                                "is another entry (forked, or rewritten with recomputed "
                                "hashes)")
        return problems

    def check_latest(self, store: AuditStore) -> None:
        """Refuse a store behind or forked from the newest checkpoint (cheap; before a run).

        Raises :class:`AuditError` (exit 1)."""
        points, _ = self.read()
        if not points:
            return
        newest = max(points, key=lambda p: p.seq)
        problems = self.check(store, [newest])
        if problems:
            raise AuditError(problems[0] + "; nothing was changed (see 'retention audit "
                             "verify')", exit_code=1)


def _last_seq(store: AuditStore) -> int:
    """The smaller of the chain head's seq and the last entry's: where the store ends."""
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(head.c.seq).where(head.c.id == 1)).scalar()
        last = conn.execute(sa.select(sa.func.max(log.c.seq))).scalar()
    return min(int(stored or 0), int(last or 0))


def _hashes(store: AuditStore, seqs: set[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    wanted = sorted(seqs)
    with store.engine.connect() as conn:
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start:start + LOOKUP_CHUNK]
            for seq, digest in conn.execute(
                    sa.select(log.c.seq, log.c.hash).where(log.c.seq.in_(chunk))):
                found[int(seq)] = str(digest)
    return found


def after(policy: Policy, store: AuditStore, run_id: str | None, reason: str) -> None:
    """Append a checkpoint when the policy keeps them (after a run or a hold change).

    Raises :class:`AuditError` (exit 1) when the file cannot be written."""
    points = Checkpoints.of(policy)
    if points is not None:
        points.append(store, run_id, reason)
