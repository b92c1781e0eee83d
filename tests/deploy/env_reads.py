"""Which environment variables a service reads, found from its code rather than from a list.

Starting at the module `python -m` runs, the scan follows the imports that stay inside Rapport
(`rapport`, `rapport_*`) and collects:

* every `X.from_env(...)` call made in the service's own package: it is called again here, with
  the same literal arguments, against an empty environment that records each name looked up
  (so prefixed names such as `GrpcSettings.from_env("router", ...)` resolve to RAPPORT_ROUTER_*);
* every literal name read straight from the process environment (`os.environ.get("X")`,
  `os.environ["X"]`, `os.getenv("X")`) in any Rapport module it imports, e.g. RAPPORT_LOG_LEVEL.

The standard OTEL_* variables are read by the OpenTelemetry SDK, not by Rapport's settings;
`otel_variables()` lists the ones it knows.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RAPPORT_PACKAGES = ("rapport", "rapport_profile", "rapport_router", "rapport_timeline")


class RecordingEnv(dict[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        self.names.add(key)
        return default

    def __getitem__(self, key: str) -> str:
        self.names.add(key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.names.add(key)
        return False


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _entry_module(name: str) -> str:
    """`python -m pkg` runs pkg.__main__."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ModuleNotFoundError(name)
    if spec.submodule_search_locations is not None:
        return f"{name}.__main__"
    return name


def _is_rapport(name: str) -> bool:
    return name.split(".", maxsplit=1)[0] in RAPPORT_PACKAGES


def _import_bindings(package: str, tree: ast.Module) -> Iterator[tuple[str, str, str | None]]:
    """(bound name, module, attribute or None) for every import statement in `tree`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    yield alias.asname, alias.name, None
                else:
                    yield alias.name.split(".", maxsplit=1)[0], alias.name.split(".", maxsplit=1)[0], None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                yield alias.asname or alias.name, base, alias.name


def _imports(package: str, tree: ast.Module) -> Iterator[str]:
    for _, module, attribute in _import_bindings(package, tree):
        yield module
        if attribute is not None:
            yield f"{module}.{attribute}"  # `from pkg import module`


def _import_namespace(package: str, tree: ast.Module) -> dict[str, Any]:
    """The names a module's imports bind, without running the module itself."""
    namespace: dict[str, Any] = {}
    for bound, module, attribute in _import_bindings(package, tree):
        try:
            imported = importlib.import_module(module)
            namespace[bound] = imported if attribute is None else getattr(imported, attribute)
        except (ImportError, AttributeError):
            try:
                namespace[bound] = importlib.import_module(f"{module}.{attribute}")
            except ImportError:
                continue
    return namespace


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _literal_environ_reads(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        target: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args:
            func = _dotted(node.func)
            if func in {"os.environ.get", "environ.get", "os.getenv", "getenv", "os.environ.setdefault"}:
                target = node.args[0]
        elif isinstance(node, ast.Subscript) and _dotted(node.value) in {"os.environ", "environ"}:
            target = node.slice
        if isinstance(target, ast.Constant) and isinstance(target.value, str):
            names.add(target.value)
    return names


def _evaluate(node: ast.expr, namespace: dict[str, Any]) -> Any:
    """Literal values and names defined in the module; anything else is not evaluated."""
    if isinstance(node, ast.Constant):
        return node.value
    dotted = _dotted(node)
    if dotted is None:
        raise LookupError(ast.unparse(node))
    head, *rest = dotted.split(".")
    if head not in namespace:
        raise LookupError(dotted)
    value = namespace[head]
    for attr in rest:
        value = getattr(value, attr)
    return value


def _loader(call: ast.Call, namespace: dict[str, Any]) -> Callable[[Mapping[str, str]], object] | None:
    """The settings loader `call` names, bound to the call's literal arguments; None if unresolvable."""
    assert isinstance(call.func, ast.Attribute)
    try:
        owner = _evaluate(call.func.value, namespace)
        from_env = owner.from_env
        params = list(inspect.signature(from_env).parameters)
        args = [_evaluate(a, namespace) for i, a in enumerate(call.args) if i >= len(params) or params[i] != "env"]
        kwargs = {k.arg: _evaluate(k.value, namespace) for k in call.keywords if k.arg not in (None, "env")}
    except (LookupError, AttributeError, TypeError, ValueError):
        return None
    takes_env = "env" in params

    def load(env: Mapping[str, str]) -> object:
        # Loaders that default to os.environ look it up at call time: point it at `env` meanwhile.
        saved = os.environ
        os.environ = env  # type: ignore[assignment]  # noqa: B003
        try:
            return from_env(*args, **kwargs, **({"env": env} if takes_env else {}))
        finally:
            os.environ = saved  # noqa: B003

    return load


@dataclass
class SettingsScan:
    """What the scan found for one entry module."""

    loaders: list[Callable[[Mapping[str, str]], object]] = field(default_factory=list)
    literal_reads: set[str] = field(default_factory=set)
    modules: set[str] = field(default_factory=set)


def _calls_its_loaders(module: str, entry_module: str) -> bool:
    """A service loads its settings anywhere in its own package; a tool of the shared `rapport`
    package (python -m rapport.provision) in its own module, the rest being library code."""
    package = entry_module.split(".", maxsplit=1)[0]
    if package == "rapport":
        return module == entry_module
    return module.split(".", maxsplit=1)[0] == package


@functools.cache
def scan(entry: str) -> SettingsScan:
    entry_module = _entry_module(entry)
    found = SettingsScan()
    pending = [entry_module]
    while pending:
        name = pending.pop()
        if name in found.modules or not _is_rapport(name) or not module_exists(name):
            continue
        found.modules.add(name)
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        is_package = spec.submodule_search_locations is not None
        package = name if is_package else name.rpartition(".")[0]
        tree = ast.parse(Path(spec.origin).read_text(), spec.origin)
        found.literal_reads |= _literal_environ_reads(tree)
        if _calls_its_loaders(name, entry_module):
            calls = [
                node
                for node in ast.walk(tree)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_env"
            ]
            if calls:
                # The entry module (`__main__` starts the service on import) is never imported:
                # names resolve through its imports. Other modules are plain libraries.
                namespace = (
                    _import_namespace(package, tree) if name == entry_module else vars(importlib.import_module(name))
                )
                for call in calls:
                    loader = _loader(call, namespace)
                    if loader is not None:
                        found.loaders.append(loader)
        pending.extend(i for i in _imports(package, tree) if _is_rapport(i))
    return found


def env_vars_read(entry: str) -> set[str]:
    """The variables read by the service that `python -m <entry>` starts."""
    found = scan(entry)
    env = RecordingEnv()
    for load in found.loaders:
        load(env)
    return env.names | found.literal_reads


def load_settings(entry: str, env: Mapping[str, str]) -> list[object]:
    """Every settings object the service's loaders build from `env` (they raise on bad values)."""
    return [load(dict(env)) for load in scan(entry).loaders]


def otel_variables() -> set[str]:
    """Every OTEL_* variable the installed OpenTelemetry API, SDK and OTLP exporter document."""
    import opentelemetry.environment_variables as api_vars
    import opentelemetry.sdk.environment_variables as sdk_vars

    names: set[str] = set()
    for module in (api_vars, sdk_vars):
        names |= {v for k, v in vars(module).items() if k.startswith("OTEL_") and isinstance(v, str)}
    return names
