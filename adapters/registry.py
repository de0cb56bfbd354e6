"""Find adapters by name: built-in ones and those registered as entry points.

Third-party adapters register in the entry-point group ``retention.adapters``
(``[project.entry-points."retention.adapters"] NAME = "package.module:Class"``). The
object an entry point names is checked when it is loaded, as pluggy checks a hook
implementation: it must be a class or a factory, a class must have every method of
:class:`~retention.adapters.protocol.Adapter` and each must accept the calls the engine
makes (the Protocol's own signature: positional, and optional arguments by keyword).
A factory's product is checked the same way when the source is opened, and so is
every instance's ``name``, ``url`` and ``supports_returning``. Every failure is an
:class:`AdapterError` naming the adapter and what it lacks.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from retention.adapters.protocol import Adapter

from retention.errors import AdapterError
from retention.policy.rules import Source

GROUP = "retention.adapters"  # entry-point group third-party adapters register in
BUILT_IN = {"sql": "retention.adapters.sql:SqlAdapter",
            "files": "retention.adapters.files:FilesAdapter"}  # found without entry points
# The methods every adapter has, in the Protocol's order
METHODS = ("reflect", "tables", "count", "sample_keys", "statements", "run_batch",
           "committed", "forget", "exists", "read", "replay", "close")
ATTRIBUTES = ("name", "url", "supports_returning")  # set by the class or its __init__
_MISSING = object()


def adapter_class(name: str) -> Any:
    """The class (or factory) registered as adapter ``name``, checked.

    Raises :class:`AdapterError` when none is installed under that name, when it cannot
    be imported, or when it is not a class or factory or lacks what the Protocol needs.
    """
    if name in BUILT_IN:
        module, _, attr = BUILT_IN[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        raise AdapterError(name, f"is not installed ({_known()})")
    return _checked(name, _load(name, found[0]))


def open_adapter(source: Source) -> Adapter:
    """An adapter instance for ``source``. Raises :class:`AdapterError` if none fits, and
    what its constructor raises (a :class:`~retention.errors.SourceError` for options it
    cannot use)."""
    factory = adapter_class(source.adapter)
    instance = factory(source)
    if source.adapter not in BUILT_IN:
        try:
            _check_instance(source.adapter, instance)
        except AdapterError:
            _close(instance)
            raise
    adapter: Adapter = instance
    return adapter


def problems(candidate: Any) -> list[str]:
    """What ``candidate`` (a class or an instance) lacks of the adapter Protocol, as
    phrases: missing methods and methods that cannot be called as the engine calls them."""
    missing = [m for m in METHODS if not callable(getattr(candidate, m, None))]
    found = [f"lacks {', '.join(missing)}"] if missing else []
    for method in METHODS:
        impl = getattr(candidate, method, None)
        if method in missing or impl is None:
            continue
        if not callable(impl):
            found.append(f"{method} is not a method")
            continue
        static = isinstance(inspect.getattr_static(candidate, method, None),
                            (staticmethod, classmethod))
        mismatch = _signature_problem(method, impl,
                                      bound=static or not inspect.isclass(candidate))
        if mismatch:
            found.append(mismatch)
    return found


def _known() -> str:
    plugins = sorted({ep.name for ep in entry_points(group=GROUP)} - set(BUILT_IN))
    return f"built in: {', '.join(BUILT_IN)}" + (
        f"; installed plugins: {', '.join(plugins)}" if plugins else "; no plugins installed")


def _load(name: str, ep: EntryPoint) -> Any:
    try:
        return ep.load()
    except Exception as exc:  # a plugin that does not import is a broken installation
        raise AdapterError(name, f"cannot be loaded: entry point {ep.value!r} raised "
                           f"{type(exc).__name__}: {exc}") from None


def _checked(name: str, loaded: Any) -> Any:
    if not callable(loaded):
        raise AdapterError(name, f"is not a class or factory (the entry point names a "
                           f"{type(loaded).__name__})")
    if inspect.isclass(loaded):
        found = problems(loaded)
        if found:
            raise AdapterError(name, _said(loaded, found))
    else:
        try:
            inspect.signature(loaded).bind(_MISSING)
        except (TypeError, ValueError):
            raise AdapterError(name, f"factory {_named(loaded)} cannot be called with the "
                               "source as its one argument") from None
    return loaded


def _check_instance(name: str, instance: Any) -> None:
    found = problems(instance)
    absent = [a for a in ATTRIBUTES if getattr(instance, a, _MISSING) is _MISSING]
    if absent:
        found.insert(0, f"has no {', '.join(absent)}")
    if found:
        raise AdapterError(name, _said(type(instance), found))


def _said(cls: Any, found: list[str]) -> str:
    return f"is incomplete ({_named(cls)}): {'; '.join(found)}; see the Adapter protocol " \
           "in retention.adapters.protocol"


def _named(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


def _signature_problem(method: str, impl: Any, bound: bool) -> str | None:
    """Why ``impl`` cannot be called as the engine calls ``Adapter.method``, or None.

    The engine passes the Protocol's required parameters positionally and may pass
    its optional ones positionally or by keyword; both calls must bind.
    """
    expected = list(inspect.signature(getattr(Adapter, method)).parameters.values())[1:]
    try:
        found = inspect.signature(impl)
    except (TypeError, ValueError):  # a builtin without a signature: cannot be checked
        return None
    params = list(found.parameters.values())
    if not bound and params and params[0].kind in (params[0].POSITIONAL_ONLY,
                                                   params[0].POSITIONAL_OR_KEYWORD):
        params = params[1:]  # self
    elif not bound and not any(p.kind is p.VAR_POSITIONAL for p in params):
        return f"{method} takes no self (a static method?)"
    signature = found.replace(parameters=params)
    required = [p for p in expected if p.default is p.empty]
    optional = [p for p in expected if p.default is not p.empty]
    calls = [([_MISSING] * len(expected), {}),
             ([_MISSING] * len(required), {p.name: _MISSING for p in optional})]
    for args, kwargs in calls:
        try:
            signature.bind(*args, **kwargs)
        except TypeError:
            return f"{method}{_shape(params)} cannot be called as {method}{_shape(expected)}"
    return None


def _shape(params: list[inspect.Parameter]) -> str:
    """Parameters as a reader writes them: names, defaults, * and ** (no annotations)."""
    return str(inspect.Signature([p.replace(annotation=p.empty) for p in params]))


def _close(instance: Any) -> None:
    close = getattr(instance, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):  # refusing it already; close never raises
            close()
