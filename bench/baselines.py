"""The baselines, as the SQL they send, run from the benchmark's own process.

* ``raw``: the limit. One transaction: ``DELETE`` the due orders' lines, then the due
  orders (no audit, no batches).
* ``laravel``: what ``php artisan model:prune`` does for two ``MassPrunable`` models,
  ``OrderLine`` (pruned first, because the foreign key refuses the orders while their
  lines exist) and ``Order``. ``MassPrunable::pruneAll()`` adds ``limit(1000)`` to the
  model's ``prunable()`` query and calls ``->delete()`` until it deletes 0 rows, each
  statement in autocommit. The statements are the ones laravel/framework's query
  grammars compile (checked against its 12.x sources, ``compileDelete``):

  - PostgresGrammar, ``compileDeleteWithJoinsOrLimit``:
    ``delete from "t" where "ctid" in (select "t"."ctid" from "t" where ... limit 1000)``
  - MySqlGrammar (MariaDbGrammar inherits it), ``compileDeleteWithoutJoins``:
    ``delete from `t` where ... limit 1000``

  with ``Order::prunable()`` = ``static::where('status', 'completed')->where('completed_at',
  '<=', $cutoff)`` and ``OrderLine::prunable()`` = ``static::whereHas('order', fn ($q) =>
  $q->where('status', 'completed')->where('completed_at', '<=', $cutoff))``, which
  compiles to ``exists (select * from "orders" where "order_lines"."order_id" =
  "orders"."id" and ("status" = ? and "completed_at" <= ?))``.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from workload import engine

RAW = [
    "DELETE FROM order_lines WHERE order_id IN "
    "(SELECT id FROM orders WHERE status = :status AND completed_at <= :cutoff)",
    "DELETE FROM orders WHERE status = :status AND completed_at <= :cutoff",
]
RAW_PART = ["DELETE FROM orders_part WHERE status = :status AND completed_at <= :cutoff"]

LARAVEL = {
    "postgresql": [
        'delete from "order_lines" where "ctid" in (select "order_lines"."ctid" from '
        '"order_lines" where exists (select * from "orders" where "order_lines"."order_id" = '
        '"orders"."id" and ("status" = :status and "completed_at" <= :cutoff)) limit 1000)',
        'delete from "orders" where "ctid" in (select "orders"."ctid" from "orders" where '
        '"status" = :status and "completed_at" <= :cutoff limit 1000)',
    ],
    "mariadb": [
        "delete from `order_lines` where exists (select * from `orders` where "
        "`order_lines`.`order_id` = `orders`.`id` and (`status` = :status and "
        "`completed_at` <= :cutoff)) limit 1000",
        "delete from `orders` where `status` = :status and `completed_at` <= :cutoff limit 1000",
    ],
}


def _params(cutoff: Any) -> dict[str, Any]:
    return {"status": "completed", "cutoff": cutoff}


def raw_delete(url: str, cutoff: Any, statements: list[str] = RAW) -> dict[str, Any]:
    """The plain DELETEs in one transaction; wall time from BEGIN to COMMIT."""
    eng = engine(url)
    try:
        with eng.connect() as conn:
            conn.exec_driver_sql("SELECT 1").all()  # connected before the clock starts
            conn.rollback()
            t0 = time.perf_counter()
            with conn.begin():
                counts = [conn.execute(sa.text(s), _params(cutoff)).rowcount for s in statements]
            wall = time.perf_counter() - t0
    finally:
        eng.dispose()
    return {"wall_s": wall, "rows": counts, "statements": len(statements)}


def laravel_prune(url: str, kind: str, cutoff: Any) -> dict[str, Any]:
    """Each model's statement in autocommit until it deletes nothing, lines first."""
    eng = engine(url, autocommit=True)
    counts, statements = [], 0
    try:
        with eng.connect() as conn:
            conn.exec_driver_sql("SELECT 1").all()
            t0 = time.perf_counter()
            for sql in LARAVEL[kind]:
                total = 0
                while True:
                    statements += 1
                    deleted = conn.execute(sa.text(sql), _params(cutoff)).rowcount
                    total += deleted
                    if deleted <= 0:
                        break
                counts.append(total)
            wall = time.perf_counter() - t0
    finally:
        eng.dispose()
    return {"wall_s": wall, "rows": counts, "statements": statements}
