#!/usr/bin/env python3
"""Newcomer entry point: `python3 dev.py run` serves the demo, `python3 dev.py test` runs the suite.

Only the Python standard library is used here so that it works on a fresh machine with
nothing but Python 3.11. It creates `.venv/`, installs the project with its `dev` extra,
then hands over to the virtual environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".installed-pyproject-sha256"
ARGON2_BUILD = ROOT / "common" / "argon2_build.py"
NODE_RP = ROOT / "tests" / "rp_node"


def _run(*args: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(args, cwd=ROOT, env=env)  # noqa: S603 - fixed argument lists
    if result.returncode:
        sys.exit(result.returncode)


def install_stamp() -> str:
    """What .venv/ was installed from: the dependencies, the Argon2id build script and its
    choice (CUM_ARGON2_BUILD). A change to any of them installs again."""
    stamped = [(ROOT / "pyproject.toml").read_bytes(), ARGON2_BUILD.read_bytes()]
    stamped.append(os.environ.get("CUM_ARGON2_BUILD", "auto").strip().lower().encode())
    return hashlib.sha256(b"\0".join(stamped)).hexdigest()


def ensure_venv() -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"Python 3.11 is required (this is {sys.version.split()[0]}).")
    if not PY.exists():
        print("Creating the virtual environment in .venv/ ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    wanted = install_stamp()
    if not STAMP.exists() or STAMP.read_text().strip() != wanted:
        print("Installing the project and its test tools ...", flush=True)
        _run(str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        _run(str(PY), "-m", "pip", "install", "--quiet", "-e", ".[dev]")
        ensure_argon2_build()
        STAMP.write_text(wanted)


def ensure_argon2_build() -> None:
    """argon2-cffi-bindings built for this CPU's SIMD level (common/argon2_build.py).

    It keeps PyPI's wheel and says so in one line when it cannot build (no compiler): that
    never stops the install.
    """
    print("Argon2id for this CPU (common/argon2_build.py, CUM_ARGON2_BUILD) ...", flush=True)
    result = subprocess.run([str(PY), "-m", "common.argon2_build"], cwd=ROOT)  # noqa: S603 - fixed arguments
    if result.returncode:
        print("argon2: the build step stopped (see above); the installed wheel is kept.", flush=True)


def ensure_node_rp() -> None:
    """openid-client for the partner-library test (tests/rp_node), when node and npm exist.

    Installed from the committed lock file (`npm ci`) when missing or not the locked version.
    Without node, or if the install fails, that one test is skipped (outside CI).
    """
    lock = json.loads((NODE_RP / "package-lock.json").read_text())
    wanted = lock["packages"]["node_modules/openid-client"]["version"]
    installed = NODE_RP / "node_modules" / "openid-client" / "package.json"
    if installed.exists() and json.loads(installed.read_text()).get("version") == wanted:
        return
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        print("node/npm not found: the openid-client test will be skipped.", flush=True)
        return
    print("Installing openid-client for the partner-library tests (npm ci) ...", flush=True)
    result = subprocess.run(  # noqa: S603 - fixed argument list
        [npm, "ci", "--prefix", str(NODE_RP), "--no-audit", "--no-fund"], cwd=ROOT
    )
    if result.returncode:
        print("npm ci failed: the openid-client test will be skipped.", flush=True)


def manage(*args: str) -> None:
    _run(str(PY), "manage.py", *args)


def cmd_run() -> None:
    ensure_venv()
    manage("migrate", "--noinput", "--verbosity", "0")
    manage("createcachetable")
    manage("ensure_signing_keys")
    # The demo library system: the SIP2 simulator on a free local port (it prints its cards).
    sip2_port = free_port()
    simulator = subprocess.Popen(  # noqa: S603
        [str(PY), "-m", "connectors.sip2.simulator", "--port", str(sip2_port)], cwd=ROOT
    )
    # The demo Naolib operator: the transport-contract simulator over HTTP (it prints its cards).
    transport_port = free_port()
    transport = subprocess.Popen(  # noqa: S603
        [str(PY), "-m", "connectors.transport_simulator", "--port", str(transport_port)], cwd=ROOT
    )
    # The demo ticketing platform: the ticketing-contract simulator (it prints its Carte Blanche cards).
    ticketing_port = free_port()
    ticketing = subprocess.Popen(  # noqa: S603
        [str(PY), "-m", "connectors.ticketing_simulator", "--port", str(ticketing_port)], cwd=ROOT
    )
    # The demo SCIM partner: scim2-server over HTTP, provisioned from the demo resident's consent.
    scim_port = free_port()
    scim = subprocess.Popen(  # noqa: S603
        [str(PY), "-m", "connectors.scim_simulator", "--port", str(scim_port)], cwd=ROOT
    )
    worker = None
    try:
        manage(
            "load_demo",
            "--sip2-port",
            str(sip2_port),
            "--transport-port",
            str(transport_port),
            "--ticketing-port",
            str(ticketing_port),
            "--scim-port",
            str(scim_port),
        )
        addr = os.environ.get("RUN_ADDRESS", "127.0.0.1:8000")
        # The outbox relay (deliveries to partners) runs beside the web server, as in production.
        worker = subprocess.Popen([str(PY), "manage.py", "outbox_worker"], cwd=ROOT)  # noqa: S603
        manage("runserver", addr)
    finally:
        for process in (worker, simulator, transport, ticketing, scim):
            if process is not None:
                process.terminate()
                process.wait(timeout=10)


def free_port() -> int:
    """A port nobody listens on now, on 127.0.0.1 (the simulator binds it right after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cmd_test(extra: list[str]) -> None:
    ensure_venv()
    ensure_node_rp()
    env = dict(os.environ)
    # Spread the suite over every core unless the caller chose otherwise.
    parallel = [] if any(arg.startswith(("-n", "--numprocesses")) for arg in extra) else ["-n", "auto"]
    _run(str(PY), "-m", "pytest", *parallel, *extra, env=env)


# Issue 16's proofs in one run: the operations suite (tests/ops: scale-out, load, faults,
# backup and restore; real processes, PostgreSQL and Redis on 127.0.0.1) and the hostile-input,
# enumeration, fuzzing and observability tests that the default run also contains.
OPS_TESTS = (
    "tests/ops",
    "tests/fuzz",
    "tests/security",
    "tests/test_request_log.py",
    "tests/test_metrics.py",
    "tests/test_health.py",
    "tests/test_unavailable.py",
)


def cmd_ops(extra: list[str]) -> None:
    """Run OPS_TESTS one at a time (the load and fault tests need the whole machine)."""
    ensure_venv()
    ensure_node_rp()
    _run(str(PY), "-m", "pytest", "--ops", "-n", "0", *OPS_TESTS, *extra, env=dict(os.environ))


def main() -> None:
    commands = {"run", "test", "ops"}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(
            "usage: python3 dev.py run | python3 dev.py test [pytest arguments]"
            " | python3 dev.py ops [pytest arguments]"
        )
    if sys.argv[1] == "run":
        cmd_run()
    elif sys.argv[1] == "ops":
        cmd_ops(sys.argv[2:])
    else:
        cmd_test(sys.argv[2:])


if __name__ == "__main__":
    main()
