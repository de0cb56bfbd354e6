"""The example policies in ``policies/``: where they are, their schemas, demo data.

``policies/`` is installed as the package ``retention.policies`` (package data), so
the examples are found the same way in a source checkout and in an installed wheel.
Used by ``retention demo`` and by the tests (and usable in users' own tests).
"""

from __future__ import annotations

import datetime as dt
import os
import random
from importlib import resources
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine


def _example(filename: str) -> Path:
    """The installed example file ``filename`` as a path on disk."""
    found = resources.files("retention.policies") / filename
    path = Path(str(found))
    if not path.is_file():
        raise FileNotFoundError(f"no example {filename!r} in the retention.policies package")
    return path


def policy_path(name: str) -> Path:
    """The example policy ``NAME.yaml`` (an absolute path)."""
    return _example(f"{name}.yaml")


def schema_statements(name: str, dialect: str) -> list[str]:
    """The CREATE TABLE statements of the example schema ``NAME.sql`` for ``dialect``."""
    text = _example(f"{name}.sql").read_text(encoding="utf-8")
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    if dialect in ("mysql", "mariadb"):
        text = text.replace(" TIMESTAMPTZ", " \0").replace(" TIMESTAMP", " DATETIME(6)")
        text = text.replace(" \0", " TIMESTAMP(6)")
    elif dialect == "sqlite":
        text = text.replace("TIMESTAMPTZ", "TIMESTAMP")
    return [s.strip() for s in text.split(";") if s.strip()]


def create_schema(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        for statement in schema_statements(name, engine.dialect.name):
            conn.exec_driver_sql(statement)


def fill_webshop(engine: Engine, now: dt.datetime, scale: int = 40, seed: int = 7) -> None:
    """Web-shop rows spread over the last ten years before ``now`` (naive UTC)."""
    rng = random.Random(seed)
    now = now.astimezone(dt.UTC).replace(tzinfo=None, microsecond=0)

    def past(max_days: int) -> dt.datetime:
        return now - dt.timedelta(days=rng.uniform(0, max_days))

    meta = sa.MetaData()
    meta.reflect(engine)
    t = meta.tables
    accounts: list[dict[str, object]] = []
    orders: list[dict[str, object]] = []
    lines: list[dict[str, object]] = []
    subs: list[dict[str, object]] = []
    contacts: list[dict[str, object]] = []
    news: list[dict[str, object]] = []
    visits: list[dict[str, object]] = []
    for i in range(1, scale + 1):
        created = past(3650)
        closed = created + dt.timedelta(days=rng.uniform(30, 2000)) if i % 3 == 0 else None
        accounts.append({"id": i, "email": f"user{i}@example.org", "name": f"User {i}",
                         "created_at": created,
                         "closed_at": closed if closed and closed < now else None})
    for i in range(1, scale * 5 + 1):
        created = past(3650)
        done = i % 7 != 0
        orders.append({"id": i, "account_id": rng.randint(1, scale),
                       "status": "completed" if done else "open",
                       "invoice_address": f"Street {i}, Amsterdam", "created_at": created,
                       "completed_at": created + dt.timedelta(days=3) if done else None})
        for j in range(rng.randint(1, 3)):
            lines.append({"id": len(lines) + 1, "order_id": i, "product": f"item-{j}",
                          "quantity": rng.randint(1, 4)})
    for i in range(1, scale + 1):
        started = past(3650)
        cancelled = started + dt.timedelta(days=rng.uniform(30, 1500)) if i % 2 else None
        subs.append({"id": i, "account_id": i, "plan": "pro", "started_at": started,
                     "cancelled_at": cancelled if cancelled and cancelled < now else None})
    for i in range(1, scale * 2 + 1):
        received = past(365)
        resolved = received + dt.timedelta(days=2) if i % 4 else None
        contacts.append({"id": i, "email": f"asker{i}@example.org", "message": "Where is it?",
                         "received_at": received,
                         "resolved_at": resolved if resolved and resolved < now else None})
    for i in range(1, scale + 1):
        subscribed = past(1000)
        news.append({"email": f"reader{i}@example.org", "subscribed_at": subscribed,
                     "unsubscribed_at": past(100) if i % 5 == 0 else None})
    for i in range(1, scale * 10 + 1):
        visits.append({"id": i, "visited_at": past(10),
                       "ip": f"203.0.113.{rng.randint(1, 254)}" if i % 4 else
                       f"2001:db8:{rng.randint(1, 9)}:{rng.randint(1, 9999)}::{i}",
                       "user_agent": "Mozilla/5.0", "path": "/"})
    with engine.begin() as conn:
        for name, rows in (("accounts", accounts), ("orders", orders), ("order_lines", lines),
                           ("subscriptions", subs), ("contact_requests", contacts),
                           ("newsletter_subscribers", news), ("visits", visits)):
            conn.execute(t[name].insert(), rows)


def fill_saas(engine: Engine, now: dt.datetime, scale: int = 40, seed: int = 11) -> None:
    """SaaS rows around ``now``: sessions, device logs, locations, deleted accounts."""
    rng = random.Random(seed)
    aware = engine.dialect.name == "postgresql"
    base = now.astimezone(dt.UTC).replace(microsecond=0)

    def at(days_ago: float) -> dt.datetime:
        value = base - dt.timedelta(days=days_ago)
        return value if aware else value.replace(tzinfo=None)

    meta = sa.MetaData()
    meta.reflect(engine)
    t = meta.tables
    accounts: list[dict[str, object]] = []
    profiles: list[dict[str, object]] = []
    for i in range(1, scale + 1):
        deleted = i % 3 == 0
        accounts.append({"id": i, "email": f"user{i}@example.com", "password_hash": "x" * 60,
                         "state": "deleted" if deleted else "active",
                         "created_at": at(rng.uniform(100, 900)),
                         "deleted_at": at(rng.uniform(0, 60)) if deleted else None})
        for field in ("name", "job", "phone")[: rng.randint(1, 3)]:
            profiles.append({"account_id": i, "field": field, "value": f"{field} of {i}"})
    sessions = [{"token": f"tok{i:04d}", "account_id": rng.randint(1, scale),
                 "ip": f"198.51.100.{i % 250 + 1}", "created_at": at(rng.uniform(0, 120) + 7),
                 "expires_at": at(rng.uniform(-7, 113))} for i in range(1, scale * 3 + 1)]
    devices = [{"account_id": a, "seq": s, "seen_at": at(rng.uniform(0, 200)),
                "device_id": f"device-{a}-{s}", "ip": f"2001:db8:{a}:{s}::1",
                "referrer": "https://search.example/?q=me"}
               for a in range(1, scale // 2 + 1) for s in range(1, 5)]
    locations = [{"id": i, "account_id": rng.randint(1, scale),
                  "recorded_at": at(rng.uniform(0, 5)), "city": "Springfield"}
                 for i in range(1, scale * 2 + 1)]
    with engine.begin() as conn:
        conn.execute(t["plans"].insert(), [{"code": "free", "price_cents": 0},
                                           {"code": "pro", "price_cents": 900}])
        for name, rows in (("accounts", accounts), ("account_profiles", profiles),
                           ("sessions", sessions), ("device_logs", devices),
                           ("location_history", locations)):
            conn.execute(t[name].insert(), rows)


def fill_elearning_shop(engine: Engine, now: dt.datetime, scale: int = 40, seed: int = 17
                        ) -> None:
    """The e-learning shop's web shop and course platform (``elearning-shop.sql``): rows
    spread over the last ten years before ``now`` (naive UTC)."""
    rng = random.Random(seed)
    now = now.astimezone(dt.UTC).replace(tzinfo=None, microsecond=0)

    def past(max_days: int) -> dt.datetime:
        return now - dt.timedelta(days=rng.uniform(0, max_days))

    courses: list[dict[str, object]] = [{"code": f"C{i}", "title": f"Course {i}"}
                                         for i in range(1, 6)]
    customers: list[dict[str, object]] = []
    orders: list[dict[str, object]] = []
    lines: list[dict[str, object]] = []
    for i in range(1, scale + 1):
        created = past(3000)
        closed = created + dt.timedelta(days=rng.uniform(30, 2000)) if i % 4 == 0 else None
        customers.append({"id": i, "email": f"elev{i}@example.se", "name": f"Elev {i}",
                          "created_at": created,
                          "closed_at": closed if closed and closed < now else None})
    for i in range(1, scale * 3 + 1):
        created = past(3650)
        paid = i % 5 != 0
        orders.append({"id": i, "customer_id": rng.randint(1, scale),
                       "status": "paid" if paid else "cancelled",
                       "billing_address": f"Storgatan {i}, Uppsala", "created_at": created,
                       "paid_at": created + dt.timedelta(hours=1) if paid else None})
        for _ in range(rng.randint(1, 2)):
            lines.append({"id": len(lines) + 1, "order_id": i,
                          "course_code": f"C{rng.randint(1, 5)}", "price_ore": 49900})
    enrolments = [{"id": i, "customer_id": rng.randint(1, scale),
                   "course_code": f"C{rng.randint(1, 5)}", "progress": rng.randint(0, 100),
                   "last_activity_at": past(1200)} for i in range(1, scale * 2 + 1)]
    _insert(engine, (("courses", courses), ("customers", customers), ("orders", orders),
                     ("order_lines", lines), ("enrolments", enrolments)))


def fill_elearning_crm(engine: Engine, now: dt.datetime, scale: int = 40, seed: int = 19
                       ) -> None:
    """The e-learning shop's CRM (``elearning-crm.sql``): contacts, a fifth of them
    unsubscribed, and their mail opens and clicks of the last 50 days (naive UTC)."""
    rng = random.Random(seed)
    now = now.astimezone(dt.UTC).replace(tzinfo=None, microsecond=0)

    def past(max_days: int) -> dt.datetime:
        return now - dt.timedelta(days=rng.uniform(0, max_days))

    segments: list[dict[str, object]] = [{"id": 1, "name": "teachers"},
                                          {"id": 2, "name": "students"}]
    contacts: list[dict[str, object]] = []
    events: list[dict[str, object]] = []
    for i in range(1, scale + 1):
        contacts.append({"id": i, "email": f"kontakt{i}@example.se", "name": f"Kontakt {i}",
                         "consented_at": past(1500),
                         "unsubscribed_at": past(200) if i % 5 == 0 else None})
        for _ in range(rng.randint(1, 4)):
            n = len(events) + 1
            events.append({"id": n, "contact_id": i, "kind": rng.choice(("open", "click")),
                           "ip": f"192.0.2.{rng.randint(1, 254)}" if n % 3 else
                           f"2001:db8:{rng.randint(1, 99)}:{rng.randint(1, 9999)}::{n}",
                           "user_agent": "Mozilla/5.0", "occurred_at": past(50)})
    _insert(engine, (("segments", segments), ("contacts", contacts), ("mail_events", events)))


def fill_maillog(directory: Path, now: dt.datetime, days: int = 120) -> list[Path]:
    """The e-learning shop's outgoing-mail log: one file ``mail-YYYY-MM-DD.log`` per day of
    the last ``days`` days before ``now``, each last modified at the end of its day."""
    directory.mkdir(parents=True, exist_ok=True)
    made = []
    for back in range(1, days + 1):
        day = (now - dt.timedelta(days=back)).astimezone(dt.UTC)
        path = directory / f"mail-{day:%Y-%m-%d}.log"
        path.write_text(f"{day:%Y-%m-%d} 08:00 to=elev@example.se subject=Kursstart\n",
                        encoding="utf-8")
        stamp = day.replace(hour=23, minute=0, second=0, microsecond=0).timestamp()
        os.utime(path, (stamp, stamp))
        made.append(path)
    return made


def _insert(engine: Engine, tables: tuple[tuple[str, list[dict[str, object]]], ...]) -> None:
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.begin() as conn:
        for name, rows in tables:
            conn.execute(meta.tables[name].insert(), rows)
