"""Argon2id at the machine's SIMD level: build argon2-cffi-bindings from source, record the build.

    python -m common.argon2_build          # with the python of the environment to build into

PyPI's wheel of argon2-cffi-bindings is one binary for every x86-64 machine: SSE2 only.
Built from its sdist with ``-mavx2``, the same C code (libargon2's ``opt.c``) hashes about a
third faster (bench/README.md, "Sign-in: Argon2id built for the machine's SIMD level"). The
output is the same bytes: Argon2id is one algorithm; tests/test_argon2_build.py compares our
hasher with OpenSSL's independent implementation.

Which build, by ``CUM_ARGON2_BUILD``:

- ``auto`` (unset): ``avx2`` on an x86-64 CPU whose ``/proc/cpuinfo`` lists ``avx2``, else
  ``generic``. Never ``-march=native``: an image built on one machine may run on another.
- ``generic``: PyPI's wheel.
- ``avx2``: ``-mavx2`` (Intel Core and Xeon since Haswell, AMD since Excavator; not every Atom).
- ``avx512``: ``-mavx2 -mavx512f`` (libargon2's AVX-512 path).

A SIMD binary run on a CPU without those instructions dies of SIGILL at its first password
check, so the build is recorded (``cum_argon2_build.json`` beside the package: level, the
CPU flags it needs, the binary's SHA-256) and a system check (``identity/checks.py``)
refuses to start where the CPU lacks them. The script installs exactly the wheel it has just
built (pip's wheel cache, keyed by the sdist and not by the compiler flags, is bypassed),
then checks one known Argon2id output in a fresh process before keeping it; if the build or
that check fails (no compiler, no network), the PyPI wheel stays and one line says so.

Standard library only: dev.py runs it with the virtual environment's python right after
installing the project, and identity/checks.py reads the record through it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "CUM_ARGON2_BUILD"
DISTRIBUTION = "argon2-cffi-bindings"
PACKAGE = "_argon2_cffi_bindings"
RECORD_NAME = "cum_argon2_build.json"
CPUINFO = Path("/proc/cpuinfo")
X86_64 = ("x86_64", "amd64")


@dataclass(frozen=True)
class Level:
    cflags: str
    requires: tuple[str, ...]  # /proc/cpuinfo flags the binary needs


LEVELS = {
    "generic": Level(cflags="", requires=()),
    "avx2": Level(cflags="-mavx2", requires=("avx2",)),
    "avx512": Level(cflags="-mavx2 -mavx512f", requires=("avx2", "avx512f")),
}
CHOICES = ("auto", *LEVELS)

# One Argon2id output at the production parameters (identity/hashers.py: m=19456 KiB, t=2,
# p=1, 32 bytes), computed with PyPI's generic wheel and identical with OpenSSL's Argon2id:
# a freshly built binary must give it before it is kept.
KNOWN_ANSWER_INPUT = {
    "secret": b"Loire-et-Erdre-2026",
    "salt": b"cum-argon2-build",
    "time_cost": 2,
    "memory_cost": 19456,
    "parallelism": 1,
    "hash_len": 32,
}
KNOWN_ANSWER = "42ca64ca8aa477458f1ed00605721e82bdfd62325427f8a6e12bcb198250c8bb"


# --- what the CPU offers, which build is installed ------------------------------------------


def cpu_flags(cpuinfo: Path | None = None) -> frozenset[str] | None:
    """The first CPU's flags in /proc/cpuinfo; None where there is no such line (not Linux x86)."""
    try:
        text = (cpuinfo or CPUINFO).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == "flags":
            return frozenset(value.split())
    return None


def choose_level(wanted: str | None, machine: str, flags: frozenset[str] | None) -> str:
    """The build for `wanted` (CUM_ARGON2_BUILD, None or "" for auto) on this machine."""
    wanted = (wanted or "auto").strip().lower()
    if wanted in LEVELS:
        return wanted
    if wanted != "auto":
        raise ValueError(f"{ENV_VAR}={wanted!r}: expected one of {', '.join(CHOICES)}")
    if machine.lower() in X86_64 and flags is not None and "avx2" in flags:
        return "avx2"
    return "generic"


def package_dir() -> Path | None:
    """Where the bindings are installed, found without importing (loading) the binary."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def binary_path(directory: Path) -> Path | None:
    found = sorted(path for pattern in ("_ffi*.so", "_ffi*.pyd") for path in directory.glob(pattern))
    return found[0] if found else None


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Problem:
    error: bool  # False: a warning
    code: str  # the check's id suffix: "cpu", "machine", "stale", "unreadable", "unknown-cpu"
    message: str
    hint: str


REBUILD_HINT = (
    f"Rebuild it on this machine: python -m common.argon2_build ({ENV_VAR}=generic for PyPI's "
    "wheel); docs/operators.md, 'Argon2id build'."
)


def installed_problems() -> list[Problem]:
    """What is wrong between the installed bindings, their record and this CPU (none: [])."""
    directory = package_dir()
    if directory is None:
        return []
    return build_problems(directory, cpu_flags(), platform.machine())


def build_problems(directory: Path, flags: frozenset[str] | None, machine: str) -> list[Problem]:
    record_file = directory / RECORD_NAME
    binary = binary_path(directory)
    if binary is None or not record_file.exists():
        # PyPI's wheel as pip installed it (SSE2 on x86-64, which every x86-64 CPU has).
        return []
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
        level = str(record["build"])
        requires = [str(flag) for flag in record["requires"]]
        recorded_machine = str(record["machine"])
        recorded_sha256 = str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return [
            Problem(
                False,
                "unreadable",
                f"{record_file} cannot be read: which Argon2id build is installed is unknown.",
                REBUILD_HINT,
            )
        ]
    if sha256_file(binary) != recorded_sha256:
        return [
            Problem(
                False,
                "stale",
                f"{binary} is not the Argon2id build recorded in {record_file} ({level}): the bindings were "
                "reinstalled since, so what this CPU needs for them is unknown.",
                REBUILD_HINT,
            )
        ]
    if recorded_machine.lower() != machine.lower():
        return [
            Problem(
                True,
                "machine",
                f"argon2-cffi-bindings was built for {recorded_machine} ({level}); "
                f"this machine is {machine}.",
                REBUILD_HINT,
            )
        ]
    if not requires:
        return []
    if flags is None:
        return [
            Problem(
                False,
                "unknown-cpu",
                f"argon2-cffi-bindings is the {level} build, which needs the CPU flags "
                f"{', '.join(requires)}; {CPUINFO} lists no flags here, so they cannot be checked.",
                REBUILD_HINT,
            )
        ]
    missing = [flag for flag in requires if flag not in flags]
    if missing:
        return [
            Problem(
                True,
                "cpu",
                f"argon2-cffi-bindings is the {level} build but this CPU lacks {', '.join(missing)}: "
                "the first password check would kill the worker (SIGILL).",
                REBUILD_HINT,
            )
        ]
    return []


# --- the build -------------------------------------------------------------------------------


def _say(version: str, message: str) -> None:
    print(f"argon2: {DISTRIBUTION} {version}: {message}", flush=True)


def _pip(*args: str, env: dict[str, str] | None = None, log: Path | None = None) -> bool:
    command = [sys.executable, "-m", "pip", *args]
    if log is None:
        return subprocess.run(command, env=env, check=False).returncode == 0  # noqa: S603 - fixed arguments
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(command)}\n".encode())
        out.flush()
        result = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)  # noqa: S603
    return result.returncode == 0


def known_answer_ok() -> bool:
    """The installed bindings, loaded in a fresh process, give KNOWN_ANSWER (a SIGILL is a no)."""
    code = (
        "import sys\n"
        "from argon2.low_level import Type, hash_secret_raw\n"
        f"raw = hash_secret_raw(type=Type.ID, **{KNOWN_ANSWER_INPUT!r})\n"
        f"sys.exit(0 if raw.hex() == {KNOWN_ANSWER!r} else 3)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)  # noqa: S603
    return result.returncode == 0


def _write_record(level: str, version: str) -> None:
    directory = package_dir()
    binary = binary_path(directory) if directory is not None else None
    if directory is None or binary is None:
        return
    record = {
        "build": level,
        "cflags": LEVELS[level].cflags,
        "requires": list(LEVELS[level].requires),
        "machine": platform.machine(),
        "version": version,
        "binary": binary.name,
        "sha256": sha256_file(binary),
    }
    (directory / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _install_pypi_wheel(version: str, log: Path) -> bool:
    requirement = f"{DISTRIBUTION}=={version}"
    return _pip(
        "install", "--force-reinstall", "--no-deps", "--only-binary", DISTRIBUTION, requirement, log=log
    )


def _build_and_install(level: str, version: str, log: Path) -> str | None:
    """None on success, else why not (the installed bindings are then unchanged)."""
    env = dict(os.environ)
    env["CFLAGS"] = f"{env.get('CFLAGS', '')} {LEVELS[level].cflags}".strip()
    with tempfile.TemporaryDirectory(prefix="cum-argon2-") as out:
        # --no-cache-dir: pip's wheel cache does not know the compiler flags a wheel was built with.
        built = _pip(
            "wheel", "--no-cache-dir", "--no-deps", "--no-binary", DISTRIBUTION, "--wheel-dir", out,
            f"{DISTRIBUTION}=={version}", env=env, log=log,
        )  # fmt: skip
        wheels = sorted(Path(out).glob("*.whl"))
        if not built or len(wheels) != 1:
            return "the build from source failed (a C compiler and Python's headers are needed)"
        wheel = wheels[0]
        with zipfile.ZipFile(wheel) as archive:
            names = [name for name in archive.namelist() if name.startswith(f"{PACKAGE}/_ffi")]
            if len(names) != 1:
                return f"the built wheel holds no single {PACKAGE}/_ffi binary"
            built_sha256 = hashlib.sha256(archive.read(names[0])).hexdigest()
        if not _pip("install", "--force-reinstall", "--no-deps", "--no-cache-dir", str(wheel), log=log):
            return "installing the built wheel failed"
    directory = package_dir()
    binary = binary_path(directory) if directory is not None else None
    if binary is None or sha256_file(binary) != built_sha256:
        return "the installed binary is not the one just built"
    return None


def install(wanted: str | None) -> int:
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        print(f"argon2: {DISTRIBUTION} is not installed here: install the project first (pip install .).")
        return 1
    flags = cpu_flags()
    try:
        level = choose_level(wanted, platform.machine(), flags)
    except ValueError as exc:
        _say(version, f"{exc}; the installed build is kept.")
        return 1
    log = Path(tempfile.gettempdir()) / f"cum-argon2-build-{os.getpid()}.log"
    if level == "generic":
        if _install_pypi_wheel(version, log):
            _write_record("generic", version)
            _say(version, "PyPI's generic wheel installed.")
        else:
            _say(
                version, f"PyPI's wheel could not be reinstalled (details in {log}); the build is unchanged."
            )
        return 0
    why = _build_and_install(level, version, log)
    if why is None:
        runs_here = flags is not None and all(flag in flags for flag in LEVELS[level].requires)
        if runs_here and not known_answer_ok():
            why = "the built binary did not give Argon2id's known answer"
        if why is None:
            _write_record(level, version)
            checked = "checked" if runs_here else "not run here: this CPU lacks its instructions"
            _say(version, f"built for {level} ({LEVELS[level].cflags}) and installed ({checked}).")
            return 0
    # Back to PyPI's wheel: the install never fails for want of a compiler.
    restored = _install_pypi_wheel(version, log)
    if restored:
        _write_record("generic", version)
    kept = "PyPI's generic wheel is installed" if restored else "the installed build is unchanged"
    _say(version, f"{why}; {kept} (details in {log}).")
    return 0


def main() -> int:
    return install(os.environ.get(ENV_VAR))


if __name__ == "__main__":
    sys.exit(main())
