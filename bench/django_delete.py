"""Django's deletion of the due orders, run by bench/enforce.py in its own virtualenv.

Usage: bench/.venv-django/bin/python bench/django_delete.py SPEC_JSON

SPEC: {"url": SQLAlchemy-style URL, "cutoff": ISO instant, "mode": "whole" | "chunked",
"chunk": 10000}. Prints one JSON line: rows deleted per model, wall time of the delete
calls alone (Django's setup is outside the clock) and the statement count.

* whole: ``Order.objects.filter(completed_at__lte=cutoff, status="completed").delete()``;
  the collector loads every due order, fast-deletes their lines (the ForeignKey's
  CASCADE) and deletes the orders 100 ids a statement, all in one transaction.
* chunked: the usual loop, ``pks = list(qs.values_list("pk", flat=True)[:10000])``,
  ``Order.objects.filter(pk__in=pks).delete()`` (each call its own transaction) until
  no pk is left.

MariaDB goes through PyMySQL as MySQLdb (mysqlclient needs a compiler and headers);
Django 5.2 checks MySQLdb's version, so PyMySQL's is raised to 2.2.1 for that check.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def database(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    name = parts.path.lstrip("/")
    common = {"NAME": name, "USER": parts.username or "", "PASSWORD": parts.password or "",
              "HOST": parts.hostname or "", "PORT": str(parts.port or "")}
    if scheme == "postgresql":
        return {"ENGINE": "django.db.backends.postgresql", **common}
    if scheme in ("mysql", "mariadb"):
        import pymysql

        pymysql.version_info = (2, 2, 1, "final", 0)
        pymysql.install_as_MySQLdb()
        return {"ENGINE": "django.db.backends.mysql", **common,
                "OPTIONS": {"charset": "utf8mb4"}}
    raise SystemExit(f"unsupported database {scheme}")


def main() -> int:
    spec = json.loads(sys.argv[1])
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": database(spec["url"])},
        INSTALLED_APPS=["django_shop"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()
    from django.db import connection, reset_queries
    from django_shop.models import Order

    cutoff = dt.datetime.fromisoformat(spec["cutoff"])
    due = Order.objects.filter(completed_at__lte=cutoff, status="completed")
    statements = 0

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal statements
        statements += 1
        return execute(sql, params, many, context)

    connection.ensure_connection()
    reset_queries()
    deleted: dict[str, int] = {}
    with connection.execute_wrapper(count):
        t0 = time.perf_counter()
        if spec["mode"] == "whole":
            _, deleted = due.delete()
        else:
            while True:
                pks = list(due.values_list("pk", flat=True)[: spec.get("chunk", 10000)])
                if not pks:
                    break
                _, per_model = Order.objects.filter(pk__in=pks).delete()
                for model, n in per_model.items():
                    deleted[model] = deleted.get(model, 0) + n
        wall = time.perf_counter() - t0
    print(json.dumps({"wall_s": wall, "deleted": deleted, "statements": statements,
                      "django": django.get_version()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
