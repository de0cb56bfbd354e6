"""A policy's ``sources:``: each source's keys, its URL (checked, its passwords remembered
so that no log or message shows them, never echoed), its ``replicas`` (MariaDB/MySQL
URLs) and ``max_replica_lag``; and whether a source can tell its replicas' lag at all.
"""

from __future__ import annotations

from typing import Any

from retention import secrets, urls
from retention.errors import RetentionError
from retention.policy import yamlfile
from retention.policy.needs import Unset, unset_in
from retention.policy.parts import Collector, shown
from retention.policy.rules import MAX_REPLICA_LAG, MIN_REPLICA_LAG, Source

MAX_REPLICAS = 64  # replicas watched per source: each is asked before every batch
_SOURCE_KEYS = {"adapter", "url", "path", "naive_timestamps", "schema", "pattern", "description",
                "replicas", "max_replica_lag", "include", "exclude", "archive_to"}
_REPLICA_BACKENDS = ("mysql", "mariadb")  # whose replicas report lag on their own connections


def read(tree: Any, line: int, out: Collector) -> dict[str, Source]:
    sources: dict[str, Source] = {}
    if not isinstance(tree, yamlfile.LineDict) or not tree:
        out.add(line, None, "'sources' must name at least one source")
        return sources
    for name, body in tree.items():
        at = tree.line_of(name)
        if not isinstance(body, yamlfile.LineDict):
            out.add(at, None, f"source {name!r} must be a mapping with 'adapter'")
            continue
        for key in body:
            if key not in _SOURCE_KEYS:
                out.add(body.line_of(key), None, f"unknown key {key!r} in source {name!r}")
        adapter = body.get("adapter")
        if not isinstance(adapter, str):
            out.add(at, None, f"source {name!r} needs 'adapter' (sql, files, ...)")
            continue
        if body.get("naive_timestamps", "utc") not in ("utc", "local"):
            out.add(body.line_of("naive_timestamps"), None,
                    "'naive_timestamps' must be 'utc' or 'local'")
        if isinstance(body.get("url"), str) and body["url"]:
            check_url(body["url"], body.line_of("url"), f"source {name!r}: url",
                      adapter == "sql", out)
        _replicas(str(name), body, adapter, out)
        lag = body.get("max_replica_lag")
        if "max_replica_lag" in body and not lag_fits(lag):
            out.add(body.line_of("max_replica_lag"), None,
                    f"source {name!r}: 'max_replica_lag' must be seconds between "
                    f"{MIN_REPLICA_LAG} and {MAX_REPLICA_LAG}, got {shown(lag)}")
        options = {k: v for k, v in body.items() if k != "adapter"}
        out.unset.extend(unset_in(options.values()))
        sources[str(name)] = Source(str(name), adapter, options, at, dict(body.lines))
    return sources


def _backend(url: Any) -> str | None:
    """The database a URL names (``postgresql``, ``mariadb``, ...), or None if it is no URL."""
    try:
        return urls.parse(url).get_backend_name() if isinstance(url, str) and url else None
    except RetentionError:
        return None


def _replicas(name: str, body: yamlfile.LineDict, adapter: str, out: Collector) -> None:
    """A source's ``replicas``: MariaDB/MySQL URLs, checked (and masked) like its ``url``."""
    if "replicas" not in body:
        return
    found, line = body["replicas"], body.line_of("replicas")
    where = f"source {name!r}: replicas"
    if not isinstance(found, yamlfile.LineList) or not found:
        out.add(line, None, f"{where} must be a list of MariaDB/MySQL URLs")
        return
    if len(found) > MAX_REPLICAS:
        out.add(line, None, f"{where}: {len(found)} replicas, more than {MAX_REPLICAS}")
        return
    backend = _backend(body.get("url"))
    if adapter != "sql" or (backend is not None and backend not in _REPLICA_BACKENDS):
        why = ("PostgreSQL reports its replicas' lag on the primary (pg_stat_replication), "
               "so it needs no list" if backend == "postgresql" else
               "only MariaDB/MySQL sources list their replicas")
        out.add(line, None, f"{where}: {why}")
        return
    for i, url in enumerate(found):
        at = found.lines[i]
        if isinstance(url, Unset):  # a command that does not connect to it
            continue
        if not isinstance(url, str) or not url:
            out.add(at, None, f"{where}[{i}] must be a MariaDB/MySQL URL")
            continue
        check_url(url, at, f"{where}[{i}]", True, out)
        if urls.problem(url) is None and _backend(url) not in _REPLICA_BACKENDS:
            out.add(at, None, f"{where}[{i}] must be a MariaDB/MySQL URL "
                    "(mysql://, mariadb://, with a driver if you like)")


def lag_unreadable(source: Source) -> str | None:
    """Why ``source`` cannot tell its replicas' lag, or None (another adapter: asked later)."""
    if source.adapter != "sql":
        return None
    backend = _backend(source.options.get("url"))
    if backend == "sqlite":
        return f"max_replica_lag: source {source.name!r} is SQLite, which has no replicas"
    if backend in _REPLICA_BACKENDS and not source.options.get("replicas"):
        return (f"max_replica_lag: MariaDB/MySQL replicas report their lag on their own "
                f"connections; list them under source {source.name!r} as 'replicas: [URL, ...]'")
    return None


def check_url(url: str, line: int, what: str, database: bool, out: Collector) -> None:
    """Remember the URL's passwords; a URL that cannot be used is a problem, never echoed.

    ``database``: the URL is opened with SQLAlchemy, so it must parse as one; other
    adapters' URLs are only checked for an unencoded '@' that would misplace a password.
    """
    reason = urls.problem(url)
    if reason in urls.AT_PROBLEMS or (reason is not None and database):
        out.add(line, None, f"{what}: {reason}")
        return  # nothing will open it
    for secret in urls.secrets_in(url):
        secrets.remember(secret)


def lag_fits(value: Any) -> bool:
    """Whether ``value`` is a finite number of seconds a replica may lag (NaN is not)."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and MIN_REPLICA_LAG <= value <= MAX_REPLICA_LAG)
