"""Database URLs: checked without echoing them, shown without passwords, on our drivers.

A password can sit in the user part (``postgresql://app:PW@host/db``) or in the query
string under any key a driver reads one from (``?password=PW``: libpq and psycopg take
``password`` and ``sslpassword``, PyMySQL ``password``, ``passwd`` and
``ssl_key_password``). Both are masked in every URL retention shows, and remembered by
:mod:`retention.secrets` so driver messages are scrubbed too.

A URL is never echoed in an error: its text may hold the password, or a piece of it
when an unencoded ``@`` moved the password's tail into the host name. SQLAlchemy reads
the first ``@`` after ``user:`` as the end of the user part, wherever it is, so a URL
with a user part (anything between ``//`` and the next ``/``) may hold one unencoded
``@`` only, before any ``?``: ``postgresql://app@host:5432/db?password=pw@tail`` would
be read as user ``app@host``, password ``5432/db?password=pw`` and host ``tail``.
"""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL, make_url

from retention.errors import UrlError

MASK = "***"  # what a password is replaced with when a URL is shown

# A plain scheme -> the dialect+driver retention installs; a URL that names a driver
# (postgresql+psycopg2://) keeps it.
DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",  # the older name that Heroku and others still hand out
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}

# A query value in libpq's conninfo form that carries a password ("... password=PW ...").
_CONNINFO_PASSWORD = re.compile(r"(?i)\b(?:ssl)?pass(?:word|wd)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")

AT_IN_PASSWORD = "the password holds an unencoded '@'; percent-encode the password (an '@' is %40)"
AT_IN_QUERY = ("an unencoded '@' follows the '?' (a password in the query string, or a '?' "
               "in the password); percent-encode the password (an '@' is %40, a '?' is %3F)")
AT_PROBLEMS = (AT_IN_PASSWORD, AT_IN_QUERY)  # the reasons that say where a password went
NOT_A_URL = ("is not a database URL of the form dialect[+driver]://user:password@host/database "
             "(percent-encode special characters in the password)")


def is_secret_key(key: str) -> bool:
    """Whether a driver reads a password from the query key ``key``."""
    lowered = key.lower()
    return "password" in lowered or "passwd" in lowered or lowered == "pwd"


def problem(url: str) -> str | None:
    """Why ``url`` cannot be used as a database URL, in words that never quote it; or None."""
    _scheme, sep, rest = url.partition("://")
    if sep and not rest.startswith("/"):  # scheme:///path has no user part to misread
        ats = rest.count("@")
        if ats > 1:
            return AT_IN_PASSWORD
        if ats == 1 and "?" in rest[:rest.index("@")]:
            return AT_IN_QUERY
    try:
        parsed = make_url(url)
    except Exception:  # ArgumentError, or ValueError for a port that is no number
        return NOT_A_URL
    if parsed.host and "@" in parsed.host:
        return AT_IN_PASSWORD
    return None


def parse(url: str) -> URL:
    """``url`` parsed, with the installed driver for a plain scheme. Raises :class:`UrlError`."""
    reason = problem(url)
    if reason is not None:
        raise UrlError(reason)
    parsed = make_url(url)
    return parsed.set(drivername=DRIVERS.get(parsed.drivername, parsed.drivername))


def secrets_in(url: str) -> list[str]:
    """Every password ``url`` carries, as the driver gets it and as it is written in URLs."""
    try:
        parsed = make_url(url)
    except Exception:
        return []
    found: list[str] = []
    if isinstance(parsed.password, str):
        found.append(parsed.password)
    for key, value in parsed.query.items():
        for one in (value,) if isinstance(value, str) else value:
            if is_secret_key(key):
                found.append(one)
            for match in _CONNINFO_PASSWORD.finditer(one):
                found += [one, match.group(1), match.group(1).strip("'")]
    forms = {form for secret in found
             for form in (secret, quote(secret, safe=""), quote(secret), quote(secret, safe=" +"),
                          quote_plus(secret))}
    return sorted(forms, key=len, reverse=True)


def safe_url(url: str) -> str:
    """``url`` with every password masked (for every log, report and audit record).

    A URL that does not parse cleanly is shown as its scheme only.
    """
    if problem(url) is not None:
        scheme = url.split("://", 1)[0] if "://" in url else ""
        return f"{scheme}://{MASK}" if re.fullmatch(r"[\w+]+", scheme) else MASK
    parsed = make_url(url)
    shown = parsed.set(query={}).render_as_string(hide_password=True)
    pairs = []
    for key, value in parsed.query.items():
        for one in (value,) if isinstance(value, str) else value:
            hidden = is_secret_key(key) or _CONNINFO_PASSWORD.search(one)
            pairs.append(f"{quote_plus(key)}={MASK if hidden else quote_plus(one)}")
    return shown + ("?" + "&".join(pairs) if pairs else "")
