"""Stop a ``retention`` subprocess of the fault tests at one exact point of its first batch.

Only tests/run/test_faults.py puts this directory on ``PYTHONPATH`` (it is never
installed), and only with ``FAULT_STOP_AT`` set does it do anything: the
process sends itself SIGSTOP at the chosen point, the test changes the target
as an application would and then kills it with SIGKILL. The product has no
test-only code path for this; the stop wraps :meth:`AuditStore.append`:

* ``after_target_commit``: just before the first ``batch_committed`` of a batch
  is appended, i.e. after the target committed (a separate audit store);
* ``before_target_commit``: just after the first batch's intents (its ``records``
  entries) were appended, i.e. while the target's transaction is still open;
* ``after_batch_committed``: just after the first ``batch_committed`` was appended
  on its own (a separate audit store);
* ``files_decided``: a files source's batch has just been decided ``committed`` and
  none of its files is deleted yet (wraps ``Journal.decide``);
* ``call:MODULE:FUNCTION:before|after``: before the first call of a module-level
  function, or after the first call that returns, e.g.
  ``call:retention.adapters.sql_partitions:_detach:after`` (the partition detached,
  not yet dropped, the transaction open).

With ``FAULT_NO_RETURNING`` set, the SQL adapter takes the path of a server without
``DELETE ... RETURNING`` (``SqlAdapter.use_returning``), and any statement that still
says RETURNING fails the run. ``FAULT_READ_CHUNK`` lowers ``sql_partitions.READ_CHUNK``
so that a partition is read (and recorded) in several chunks.
"""

from __future__ import annotations

import importlib
import os
import signal
from typing import Any

_STOP_AT = os.environ.get("FAULT_STOP_AT")


def _install(point: str) -> None:
    from retention.audit.store import AuditStore

    append = AuditStore.append

    def stopping(self: AuditStore, entries: Any, conn: Any = None) -> None:
        kinds = {e["kind"] for e in entries}
        if point == "after_target_commit" and conn is None and kinds == {"batch_committed"}:
            os.kill(os.getpid(), signal.SIGSTOP)
        append(self, entries, conn)
        if point == "after_batch_committed" and conn is None and kinds == {"batch_committed"}:
            os.kill(os.getpid(), signal.SIGSTOP)
        if point == "before_target_commit" and conn is None and kinds == {"records"}:
            os.kill(os.getpid(), signal.SIGSTOP)

    AuditStore.append = stopping  # type: ignore[method-assign]


def _install_files() -> None:
    from retention.adapters.files_journal import COMMITTED, Journal

    decide = Journal.decide

    def stopping(self: Journal, batch_id: str, decision: str) -> str:
        found = decide(self, batch_id, decision)
        if decision == COMMITTED:
            os.kill(os.getpid(), signal.SIGSTOP)
        return found

    Journal.decide = stopping  # type: ignore[method-assign]


def _install_call(point: str) -> None:
    _call, module_name, name, when = point.split(":")
    module = importlib.import_module(module_name)
    original = getattr(module, name)
    done = {"stopped": False}

    def stopping(*args: Any, **kwargs: Any) -> Any:
        if when == "before" and not done["stopped"]:
            done["stopped"] = True
            os.kill(os.getpid(), signal.SIGSTOP)
        result = original(*args, **kwargs)  # a call that raises does not count for "after"
        if when == "after" and not done["stopped"]:
            done["stopped"] = True
            os.kill(os.getpid(), signal.SIGSTOP)
        return result

    setattr(module, name, stopping)


if os.environ.get("FAULT_READ_CHUNK"):
    from retention.adapters import sql_partitions

    sql_partitions.READ_CHUNK = int(os.environ["FAULT_READ_CHUNK"])
if _STOP_AT == "files_decided":
    _install_files()
elif _STOP_AT and _STOP_AT.startswith("call:"):
    _install_call(_STOP_AT)
elif _STOP_AT:
    _install(_STOP_AT)


def _without_returning() -> None:
    import sqlalchemy as sa
    from retention.adapters.sql import SqlAdapter

    SqlAdapter.use_returning = False

    @sa.event.listens_for(sa.Engine, "before_cursor_execute")
    def refuse(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        said = statement.upper()
        if said.lstrip().startswith("DELETE") and "RETURNING" in said:
            raise AssertionError(f"DELETE ... RETURNING used without it: {statement}")


if os.environ.get("FAULT_NO_RETURNING"):
    _without_returning()
