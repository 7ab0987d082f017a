"""No import cycle among the project's modules, imports inside functions included.

import-linter (pyproject.toml) checks the direction between layers; a cycle inside one
layer (two modules of identity.oidc importing each other, even lazily) is what this test
refuses. The graph is grimp's, the one lint-imports reads: every `import` statement of
every module, wherever it stands in the module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp

PACKAGES = ("common", "config", "identity", "consent", "profiles", "connectors")


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The groups of two or more modules that import each other, directly or not (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative, so a long chain of imports cannot exhaust the recursion limit.
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_detector_finds_a_cycle_through_several_modules():
    graph = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": [], "e": ["e2"], "e2": ["e"]}
    assert sorted(strongly_connected(graph)) == [["a", "b", "c"], ["e", "e2"]]
    assert strongly_connected({"a": ["b"], "b": []}) == []


def test_no_import_cycle_among_the_project_modules():
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False, cache_dir=None)
    edges = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    cycles = strongly_connected(edges)
    report = []
    for group in cycles:
        members = set(group)
        for importer in group:
            for imported in sorted(edges[importer] & members):
                for detail in graph.get_import_details(importer=importer, imported=imported):
                    report.append(f"{importer}:{detail['line_number']} imports {imported}")
    assert not cycles, "import cycles:\n" + "\n".join(report)


def test_web_workers_do_not_load_the_scim_libraries():
    # scim2-client, scim2-models and httpx2 (~14–27 MiB per process) serve SCIM deliveries
    # only (connectors/scim_wire.py, imported where a SCIM partner is called): a web worker
    # that loads the WSGI application and every URL must not import them (issue 14, memory).
    code = (
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); "
        "import config.wsgi, config.urls; "
        "print(sorted(m for m in ('scim2_client', 'scim2_models', 'httpx2', 'connectors.scim_wire') "
        "if m in sys.modules))"
    )
    result = _fresh_interpreter(code)
    assert result.stdout.strip() == "[]"


def test_web_workers_load_py_webauthn_only_for_a_passkey():
    # py_webauthn with cbor2, pyOpenSSL and pyasn1 (~5 MiB per worker) serves passkey
    # requests only: identity/mfa/passkeys.py imports it in its functions. The WSGI
    # application and every URL load without it; the first passkey operation loads it.
    code = (
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); "
        "import config.wsgi, config.urls; "
        "heavy = ('webauthn', 'cbor2', 'OpenSSL', 'pyasn1'); "
        "print(sorted(m for m in heavy if m in sys.modules)); "
        "from identity.mfa import passkeys; "
        "passkeys.authentication_options(allow=None); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = _fresh_interpreter(code)
    assert result.stdout.split("\n")[:2] == ["[]", "['OpenSSL', 'cbor2', 'pyasn1', 'webauthn']"]


def _fresh_interpreter(code: str) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a new Python process at the project's root (no database, no Redis)."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result
