"""One run: compile the rules into plans against the live schemas, then enforce them.

The engine opens a session of adapters, validates and compiles every rule, and hands
each plan to ``enforce`` (lease, reconcile, safety limits, batches with retries); legal
holds, the stop flag, outcomes and replay after a restore belong to the run as well.

Import its modules with ``from retention.run import engine`` or ``from
retention.run.engine import ...``: the attribute ``retention.run`` is the public
function :func:`retention.run.engine.run`, so ``import retention.run.engine as e`` fails.
"""

from __future__ import annotations
