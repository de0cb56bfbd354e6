"""Real applications' tables, built the way those applications build them, under a real policy.

* Django: its own migrations (``django.contrib.auth``, ``contenttypes``, ``sessions``,
  ``admin``) run against the throwaway database in a subprocess, so Django's global
  settings never enter the test process. Django declares its foreign keys
  ``DEFERRABLE INITIALLY DEFERRED`` on PostgreSQL and SQLite; ``django_admin_log``,
  ``auth_user_groups`` and ``auth_user_user_permissions`` reference ``auth_user``.
* WordPress: ``wp_comments`` exactly as ``wp-admin/includes/schema.php`` creates it
  (MariaDB, ``datetime`` columns defaulting to the zero date, NOT NULL text columns).

Everything runs through the command line, as an operator would run it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.support import keys, table_rows, write_policy

RETENTION = Path(sys.executable).with_name("retention")
AS_OF = "2026-03-01T12:00:00+00:00"
_OUR_VARS = ("SITE_DATABASE_URL", "RETENTION_AUDIT_URL", "RETENTION_POLICY")

# -- Django ------------------------------------------------------------------------------

_MIGRATE = """
import json, os
database = json.loads(os.environ["DJANGO_TEST_DATABASE"])
if database["ENGINE"].endswith(".mysql"):
    import pymysql  # Django's MySQL backend imports MySQLdb (mysqlclient)
    pymysql.install_as_MySQLdb()
import django
from django.conf import settings
settings.configure(
    DATABASES={"default": database},
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes",
                    "django.contrib.sessions", "django.contrib.admin"],
    USE_TZ=True, TIME_ZONE="UTC", DEFAULT_AUTO_FIELD="django.db.models.AutoField",
)
django.setup()
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
"""


def _django_database(url: str) -> dict[str, Any]:
    """Django's DATABASES entry for an SQLAlchemy URL of the throwaway database."""
    parts = make_url(url)
    if parts.get_backend_name() == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parts.database}
    engine = ("django.db.backends.postgresql" if parts.get_backend_name() == "postgresql"
              else "django.db.backends.mysql")
    found: dict[str, Any] = {"ENGINE": engine, "NAME": parts.database,
                             "USER": parts.username or "", "PASSWORD": parts.password or "",
                             "HOST": parts.host or "", "PORT": str(parts.port or "")}
    if engine.endswith(".mysql"):
        found["OPTIONS"] = {"charset": "utf8mb4"}
    return found


def _migrate(url: str) -> None:
    env = {**os.environ, "DJANGO_TEST_DATABASE": json.dumps(_django_database(url))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run([sys.executable, "-c", _MIGRATE], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr


def _at(kind: str, *args: int) -> dt.datetime:
    """An instant as Django stores it: aware on PostgreSQL, naive UTC elsewhere."""
    at = dt.datetime(*args, tzinfo=dt.UTC)  # type: ignore[misc]
    return at if kind == "postgresql" else at.replace(tzinfo=None)


def _user(pk: int, kind: str, last_login: dt.datetime | None, joined: dt.datetime,
          active: bool, superuser: bool = False) -> dict[str, Any]:
    return {"id": pk, "password": "!", "last_login": last_login, "is_superuser": superuser,
            "username": f"user{pk}", "first_name": "", "last_name": "",
            "email": f"user{pk}@example.com", "is_staff": superuser, "is_active": active,
            "date_joined": joined}


def _fill_django(url: str, kind: str) -> None:
    """Six users, their groups and permissions, an admin log, five sessions."""
    eng = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        table = {name: sa.Table(name, meta, autoload_with=eng) for name in (
            "auth_user", "auth_group", "auth_permission", "auth_user_groups",
            "auth_user_user_permissions", "django_admin_log", "django_content_type",
            "django_session")}
        with eng.begin() as conn:
            conn.execute(table["auth_user"].insert(), [
                _user(1, kind, _at(kind, 2026, 2, 20), _at(kind, 2018, 1, 1), True, True),
                _user(2, kind, _at(kind, 2021, 5, 1), _at(kind, 2019, 3, 1), False),
                _user(3, kind, _at(kind, 2021, 6, 1), _at(kind, 2019, 4, 1), False),
                _user(4, kind, None, _at(kind, 2019, 1, 1), False),
                _user(5, kind, _at(kind, 2025, 12, 1), _at(kind, 2020, 1, 1), False),
                _user(6, kind, _at(kind, 2020, 1, 1), _at(kind, 2018, 6, 1), True),
            ])
            conn.execute(table["auth_group"].insert(), [{"id": 1, "name": "editors"}])
            permission = conn.execute(sa.select(sa.func.min(table["auth_permission"].c.id))
                                      ).scalar_one()
            content_type = conn.execute(
                sa.select(table["django_content_type"].c.id).where(
                    table["django_content_type"].c.model == "user")).scalar_one()
            conn.execute(table["auth_user_groups"].insert(), [
                {"id": 1, "user_id": 2, "group_id": 1}, {"id": 2, "user_id": 3, "group_id": 1},
                {"id": 3, "user_id": 6, "group_id": 1}])
            conn.execute(table["auth_user_user_permissions"].insert(), [
                {"id": 1, "user_id": 2, "permission_id": permission}])
            conn.execute(table["django_admin_log"].insert(), [
                {"id": 1, "action_time": _at(kind, 2021, 5, 20), "user_id": 3,
                 "content_type_id": content_type, "object_id": "4", "object_repr": "user4",
                 "action_flag": 2, "change_message": "[]"},
                {"id": 2, "action_time": _at(kind, 2026, 1, 5), "user_id": 1,
                 "content_type_id": content_type, "object_id": "3", "object_repr": "user3",
                 "action_flag": 2, "change_message": "[]"}])
            conn.execute(table["django_session"].insert(), [
                {"session_key": f"s{i}", "session_data": "e30:1", "expire_date": at}
                for i, at in enumerate([_at(kind, 2026, 2, 1), _at(kind, 2026, 3, 1, 11),
                                        _at(kind, 2026, 3, 1, 13), _at(kind, 2026, 3, 14),
                                        _at(kind, 2026, 4, 1)], start=1)])
    finally:
        eng.dispose()


_ACCOUNT_CHILDREN = ("    children:\n      - {table: auth_user_groups, key: user_id}\n"
                     "      - {table: auth_user_user_permissions, key: user_id}\n")
DJANGO_POLICY = (
    "policy: django-site\nversion: '2026-01-01'\n"
    "sources:\n  site: {adapter: sql, url: '${SITE_DATABASE_URL}'}\n"
    "audit: {url: '${RETENTION_AUDIT_URL}'}\n"
    "defaults: {source: site}\n"
    "rules:\n"
    "  closed-accounts:\n    table: auth_user\n    retain: 2 years after last_login\n"
    "    where: {is_active: false, is_superuser: false}\n" + _ACCOUNT_CHILDREN +
    "    legal_basis: Account data, until two years after the last login of a closed account\n"
    "  unused-accounts:\n    table: auth_user\n    retain: 2 years after date_joined\n"
    "    where: {is_active: false, is_superuser: false, last_login: null}\n"
    + _ACCOUNT_CHILDREN +
    "    legal_basis: Account data of a closed account that never logged in\n"
    "  expired-sessions:\n    table: django_session\n    retain: until expire_date\n"
    "    legal_basis: Session data, until the session expires\n")


def _cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in _OUR_VARS}
    full.update(env)
    return subprocess.run([str(RETENTION), *args], env=full, cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


def _rules(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr
    return {r["rule"]: r for r in json.loads(proc.stdout)["rules"]}


def test_django_accounts_and_sessions_under_a_policy(db_url: str, db_kind: str,
                                                    tmp_path: Path) -> None:
    """Django's own tables: a referenced account is kept and counted, nothing fails, twice."""
    _migrate(db_url)
    _fill_django(db_url, db_kind)
    path = str(write_policy(tmp_path, DJANGO_POLICY))
    env = {"SITE_DATABASE_URL": db_url, "RETENTION_AUDIT_URL": f"sqlite:///{tmp_path}/a.db"}

    checked = _cli(tmp_path, env, "validate", path)
    assert checked.returncode == 0, checked.stderr
    warning = ("table 'django_admin_log' references 'auth_user' (user_id): referenced rows "
               "are kept and counted as blocked; declare it under 'children' to delete them "
               "together")
    assert checked.stderr.splitlines() == [
        f"warning: {path}:12: rule 'closed-accounts': {warning}",
        f"warning: {path}:20: rule 'unused-accounts': {warning}"]

    report = _rules(_cli(tmp_path, env, "report", path, "--as-of", AS_OF, "--format", "json"))
    assert {name: (r["due"], r["blocked"], r["children"]) for name, r in report.items()} == {
        "closed-accounts": (1, {"django_admin_log": 1},
                            {"auth_user_groups": 1, "auth_user_user_permissions": 1}),
        "unused-accounts": (1, {"django_admin_log": 0},
                            {"auth_user_groups": 0, "auth_user_user_permissions": 0}),
        "expired-sessions": (2, {}, {}),
    }

    first = _rules(_cli(tmp_path, env, "run", path, "--as-of", AS_OF, "--format", "json"))
    assert {name: (r["status"], r["deleted"], r["blocked"], r["children"])
            for name, r in first.items()} == {
        "closed-accounts": ("ok", 1, {"django_admin_log": 1},
                            {"auth_user_groups": 1, "auth_user_user_permissions": 1}),
        "unused-accounts": ("ok", 1, {"django_admin_log": 0}, {}),
        "expired-sessions": ("ok", 2, {}, {}),
    }
    assert keys(db_url, "auth_user") == {1, 3, 5, 6}
    assert keys(db_url, "auth_user_groups") == {2, 3}
    assert keys(db_url, "auth_user_user_permissions") == set()
    assert keys(db_url, "django_admin_log") == {1, 2}
    assert keys(db_url, "django_session", "session_key") == {"s3", "s4", "s5"}

    second = _rules(_cli(tmp_path, env, "run", path, "--as-of", AS_OF, "--format", "json"))
    assert {name: (r["status"], r["deleted"], r["blocked"]) for name, r in second.items()} == {
        "closed-accounts": ("ok", 0, {"django_admin_log": 1}),
        "unused-accounts": ("ok", 0, {"django_admin_log": 0}),
        "expired-sessions": ("ok", 0, {}),
    }
    verified = _cli(tmp_path, env, "audit", "verify", path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


# -- WordPress ---------------------------------------------------------------------------

# wp-admin/includes/schema.php, wp_get_db_schema(): the comments table, with the
# $charset_collate WordPress uses on MariaDB.
WP_COMMENTS = """CREATE TABLE wp_comments (
	comment_ID bigint(20) unsigned NOT NULL auto_increment,
	comment_post_ID bigint(20) unsigned NOT NULL default '0',
	comment_author tinytext NOT NULL,
	comment_author_email varchar(100) NOT NULL default '',
	comment_author_url varchar(200) NOT NULL default '',
	comment_author_IP varchar(100) NOT NULL default '',
	comment_date datetime NOT NULL default '0000-00-00 00:00:00',
	comment_date_gmt datetime NOT NULL default '0000-00-00 00:00:00',
	comment_content text NOT NULL,
	comment_karma int(11) NOT NULL default '0',
	comment_approved varchar(20) NOT NULL default '1',
	comment_agent varchar(255) NOT NULL default '',
	comment_type varchar(20) NOT NULL default 'comment',
	comment_parent bigint(20) unsigned NOT NULL default '0',
	user_id bigint(20) unsigned NOT NULL default '0',
	PRIMARY KEY  (comment_ID),
	KEY comment_post_ID (comment_post_ID),
	KEY comment_approved_date_gmt (comment_approved,comment_date_gmt),
	KEY comment_date_gmt (comment_date_gmt),
	KEY comment_parent (comment_parent),
	KEY comment_author_email (comment_author_email(10))
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci"""

_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def _comment(pk: int, gmt: str, approved: str, ip: str = "203.0.113.77",
             email: str = "reader@example.com", agent: str = _AGENT) -> dict[str, Any]:
    return {"comment_ID": pk, "comment_post_ID": 1, "comment_author": f"reader {pk}",
            "comment_author_email": email, "comment_author_url": "",
            "comment_author_IP": ip, "comment_date": gmt, "comment_date_gmt": gmt,
            "comment_content": "Nice post.", "comment_approved": approved,
            "comment_agent": agent}


def _wordpress(url: str, comments: list[dict[str, Any]]) -> None:
    eng = sa.create_engine(url)
    try:
        with eng.begin() as conn:
            conn.exec_driver_sql(WP_COMMENTS)
            table = sa.Table("wp_comments", sa.MetaData(), autoload_with=conn)
            conn.execute(table.insert(), comments)
    finally:
        eng.dispose()


def _wp_policy(tmp_path: Path, rules: str) -> tuple[str, dict[str, str]]:
    path = write_policy(tmp_path, (
        "policy: blog\nversion: '2026-01-01'\n"
        "sources:\n  blog: {adapter: sql, url: '${SITE_DATABASE_URL}'}\n"
        "audit: {url: '${RETENTION_AUDIT_URL}'}\n"
        "defaults: {source: blog, max_fraction: 1.0}\nrules:\n" + rules))
    return str(path), {"RETENTION_AUDIT_URL": f"sqlite:///{tmp_path}/a.db"}


SPAM_RULE = ("  spam-comments:\n    table: wp_comments\n"
             "    retain: 30 days after comment_date_gmt\n"
             "    where: {comment_approved: [spam, trash]}\n")
PERSONAL_DATA_RULE = (
    "  comment-personal-data:\n    table: wp_comments\n"
    "    retain: 6 months after comment_date_gmt\n"
    "    where: {comment_approved: {not: [spam, trash]}}\n"
    "    action:\n      anonymize:\n        comment_author_IP: truncate_ip\n"
    "        comment_author_email: {fixed: ''}\n        comment_agent: {fixed: ''}\n")


@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
def test_wordpress_spam_and_trash_comments_are_deleted(db_url: str, tmp_path: Path) -> None:
    """Spam and trash go 30 days after comment_date_gmt; approved and pending comments stay."""
    _wordpress(db_url, [
        _comment(1, "2026-01-10 08:00:00", "spam"), _comment(2, "2026-01-29 23:59:59", "trash"),
        _comment(3, "2026-01-30 00:00:00", "spam"), _comment(4, "2025-01-10 08:00:00", "1"),
        _comment(5, "2025-01-10 08:00:00", "0")])
    path, env = _wp_policy(tmp_path, SPAM_RULE)
    env["SITE_DATABASE_URL"] = db_url
    assert _cli(tmp_path, env, "validate", path).returncode == 0
    first = _rules(_cli(tmp_path, env, "run", path, "--as-of", AS_OF, "--format", "json"))
    assert (first["spam-comments"]["deleted"], first["spam-comments"]["blocked"]) == (2, {})
    assert keys(db_url, "wp_comments", "comment_ID") == {3, 4, 5}
    again = _rules(_cli(tmp_path, env, "run", path, "--as-of", AS_OF, "--format", "json"))
    assert again["spam-comments"]["deleted"] == 0
    assert _cli(tmp_path, env, "audit", "verify", path).returncode == 0


@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
def test_wordpress_comments_lose_their_personal_data_after_six_months(
        db_url: str, tmp_path: Path) -> None:
    """IP truncated, e-mail and agent emptied in place; '' or a non-address IP becomes ''."""
    _wordpress(db_url, [
        _comment(1, "2025-06-01 10:00:00", "1"),
        _comment(2, "2025-06-01 10:00:00", "0", ip="2001:db8:85a3:8d3:1319:8a2e:370:7348"),
        _comment(3, "2025-06-01 10:00:00", "1", ip=""),
        _comment(4, "2025-06-01 10:00:00", "1", ip="unknown"),
        _comment(5, "2025-06-01 10:00:00", "spam"),
        _comment(6, "2026-02-01 10:00:00", "1"),
        _comment(7, "2025-06-01 10:00:00", "1", ip="203.0.113.0", email="", agent="")])
    path, env = _wp_policy(tmp_path, PERSONAL_DATA_RULE)
    env["SITE_DATABASE_URL"] = db_url
    assert _cli(tmp_path, env, "validate", path).returncode == 0
    report = _rules(_cli(tmp_path, env, "report", path, "--as-of", AS_OF, "--format", "json"))
    assert report["comment-personal-data"]["due"] == 4  # 7 is anonymized already
    first = _rules(_cli(tmp_path, env, "run", path, "--as-of", AS_OF, "--format", "json"))
    assert first["comment-personal-data"]["anonymized"] == 4
    rows = {r["comment_ID"]: r for r in table_rows(db_url, "wp_comments", "comment_ID")}
    assert [rows[i]["comment_author_IP"] for i in range(1, 8)] == [
        "203.0.113.0", "2001:db8:85a3::", "", "", "203.0.113.77", "203.0.113.77",
        "203.0.113.0"]
    assert {rows[i]["comment_author_email"] for i in (1, 2, 3, 4, 7)} == {""}
    assert {rows[i]["comment_agent"] for i in (1, 2, 3, 4, 7)} == {""}
    assert rows[5]["comment_agent"] == rows[6]["comment_agent"] == _AGENT
    again = _rules(_cli(tmp_path, env, "run", path, "--as-of", AS_OF, "--format", "json"))
    assert again["comment-personal-data"]["anonymized"] == 0


@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
def test_wordpress_zero_dates_are_never_due_and_are_counted(db_url: str,
                                                            tmp_path: Path) -> None:
    """A comment whose comment_date_gmt is WordPress's '0000-00-00 00:00:00' stays."""
    _wordpress(db_url, [
        _comment(1, "2026-01-10 08:00:00", "spam"), _comment(2, "0000-00-00 00:00:00", "spam"),
        _comment(3, "0000-00-00 00:00:00", "1")])
    path, env = _wp_policy(tmp_path, SPAM_RULE)
    env["SITE_DATABASE_URL"] = db_url
    report = _rules(_cli(tmp_path, env, "report", path, "--as-of", AS_OF, "--format", "json"))
    assert (report["spam-comments"]["due"], report["spam-comments"]["unreadable_events"]) == (
        1, 1)
    first = _rules(_cli(tmp_path, env, "run", path, "--as-of", AS_OF, "--format", "json"))
    assert (first["spam-comments"]["status"], first["spam-comments"]["deleted"]) == ("ok", 1)
    assert keys(db_url, "wp_comments", "comment_ID") == {2, 3}
