"""Argon2id built for the CPU's SIMD level (common/argon2_build.py) computes the same hashes.

Whichever build of argon2-cffi-bindings is installed (PyPI's generic wheel, or `-mavx2` /
`-mavx512f` from `python -m common.argon2_build`), the production hasher must give the same
bytes as OpenSSL's Argon2id (cryptography, an independent implementation) and as the hashes
it stored before (a fixed hash made with PyPI's generic wheel). A miscompiled build fails
here. The system check refusing a build the CPU cannot run is tested against a fake
installed package and a fake /proc/cpuinfo.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import platform
import unicodedata
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from django.core.checks import Error, Warning
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from common import argon2_build
from identity.checks import check_argon2_build
from identity.hashers import Argon2idHasher, FastTestArgon2idHasher

# Made with PyPI's generic (SSE2) wheel of argon2-cffi-bindings 26.2.0, before any SIMD build:
# Argon2idHasher().encode(KNOWN_PASSWORD, KNOWN_SALT).
KNOWN_PASSWORD = "Loire-et-Erdre-2026"
KNOWN_SALT = "cumKnownAnswerSalt2026"
KNOWN_ENCODED = (
    "argon2$argon2id$v=19$m=19456,t=2,p=1$Y3VtS25vd25BbnN3ZXJTYWx0MjAyNg$"
    "MIEwLGA5rQgmJZ+ilLXCy0gcdhhNISKKQmN8OLXBdlc"
)
# A password NFKC changes (decomposed accents), as typed; the same hasher, the same wheel.
KNOWN_UNICODE_PASSWORD = "mot de passe e\u0301te\u0301 \u2713"
KNOWN_UNICODE_SALT = "Zq3v8LrT0pWb5NcY1dEa9K"
KNOWN_UNICODE_ENCODED = (
    "argon2$argon2id$v=19$m=19456,t=2,p=1$WnEzdjhMclQwcFdiNU5jWTFkRWE5Sw$"
    "UuDRxqKUVDfTad2F6kbkw5Yy6yux7A7OtLT80N801ok"
)

CASES = [
    ("Loire-et-Erdre-2026", "cumKnownAnswerSalt2026"),
    ("", "AAAAAAAAAAAAAAAAAAAAAA"),
    ("une phrase de passe bien longue " * 4, "Zq3v8LrT0pWb5NcY1dEa9K"),
    ("mot de passe e\u0301te\u0301 \u2713 \U0001f600", "saltWithAnotherLength"),
    ("\x00\xff\u20ac-nul-et-euro", "0123456789abcdefghijkl"),
]


def _raw_hash(encoded: str) -> bytes:
    digest = encoded.rsplit("$", 1)[1]
    return base64.b64decode(digest + "=" * (-len(digest) % 4))


def _openssl_argon2id(hasher: Argon2idHasher, password: str, salt: str) -> bytes:
    kdf = Argon2id(
        salt=salt.encode(),
        length=32,
        iterations=hasher.time_cost,
        lanes=hasher.parallelism,
        memory_cost=hasher.memory_cost,
    )
    return kdf.derive(unicodedata.normalize("NFKC", password).encode())


@pytest.mark.parametrize(("password", "salt"), CASES)
def test_production_hasher_matches_openssl_argon2id(password: str, salt: str) -> None:
    hasher = Argon2idHasher()
    assert (hasher.memory_cost, hasher.time_cost, hasher.parallelism) == (19456, 2, 1)
    encoded = hasher.encode(password, salt)
    assert encoded.startswith("argon2$argon2id$v=19$m=19456,t=2,p=1$")
    assert _raw_hash(encoded) == _openssl_argon2id(hasher, password, salt)


def test_test_suite_hasher_matches_openssl_argon2id_too() -> None:
    hasher = FastTestArgon2idHasher()
    for password, salt in CASES:
        assert _raw_hash(hasher.encode(password, salt)) == _openssl_argon2id(hasher, password, salt)


@pytest.mark.parametrize(
    ("password", "salt", "encoded"),
    [
        (KNOWN_PASSWORD, KNOWN_SALT, KNOWN_ENCODED),
        (KNOWN_UNICODE_PASSWORD, KNOWN_UNICODE_SALT, KNOWN_UNICODE_ENCODED),
    ],
)
def test_hashes_stored_with_the_generic_wheel_are_made_and_verified_alike(
    password: str, salt: str, encoded: str
) -> None:
    hasher = Argon2idHasher()
    assert hasher.encode(password, salt) == encoded
    assert hasher.verify(password, encoded)
    assert not hasher.verify(password + "!", encoded)
    # One bit of the stored hash changed: refused.
    raw = bytearray(_raw_hash(encoded))
    raw[0] ^= 1
    tampered = encoded.rsplit("$", 1)[0] + "$" + base64.b64encode(bytes(raw)).decode().rstrip("=")
    assert not hasher.verify(password, tampered)


def test_the_install_known_answer_is_openssl_argon2id() -> None:
    given = argon2_build.KNOWN_ANSWER_INPUT
    kdf = Argon2id(
        salt=given["salt"],
        length=given["hash_len"],
        iterations=given["time_cost"],
        lanes=given["parallelism"],
        memory_cost=given["memory_cost"],
    )
    assert kdf.derive(given["secret"]).hex() == argon2_build.KNOWN_ANSWER
    # The installed bindings, as the install script checks them (in a fresh process).
    assert argon2_build.known_answer_ok()


# --- which build: the choice -------------------------------------------------------------------


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert argon2_build.cpu_flags(cpuinfo) == frozenset({"fpu", "sse2", "avx", "avx2"})
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd aes\n")
    assert argon2_build.cpu_flags(arm) is None
    assert argon2_build.cpu_flags(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("wanted", "machine", "flags", "level"),
    [
        (None, "x86_64", {"sse2", "avx", "avx2"}, "avx2"),
        ("", "x86_64", {"sse2", "avx", "avx2", "avx512f"}, "avx2"),  # AVX-512 only when asked
        ("auto", "AMD64", {"avx2"}, "avx2"),
        (None, "x86_64", {"sse2", "avx"}, "generic"),
        (None, "aarch64", None, "generic"),
        (None, "x86_64", None, "generic"),  # no /proc/cpuinfo: nothing assumed
        ("generic", "x86_64", {"avx2"}, "generic"),
        ("avx512", "x86_64", {"avx2", "avx512f"}, "avx512"),
        ("AVX2", "x86_64", set(), "avx2"),  # an image built for other machines
    ],
)
def test_the_build_is_chosen_conservatively(
    wanted: str | None, machine: str, flags: set[str] | None, level: str
) -> None:
    assert argon2_build.choose_level(wanted, machine, None if flags is None else frozenset(flags)) == level


def test_an_unknown_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="CUM_ARGON2_BUILD='native'"):
        argon2_build.choose_level("native", "x86_64", frozenset({"avx2"}))


def test_dev_py_installs_again_when_the_build_or_its_choice_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("dev_entry_point", Path(__file__).parent.parent / "dev.py")
    assert spec is not None and spec.loader is not None
    dev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev)
    assert dev.ARGON2_BUILD.read_bytes() == Path(argon2_build.__file__).read_bytes()
    monkeypatch.delenv("CUM_ARGON2_BUILD", raising=False)
    auto = dev.install_stamp()
    monkeypatch.setenv("CUM_ARGON2_BUILD", "Auto ")
    assert dev.install_stamp() == auto
    monkeypatch.setenv("CUM_ARGON2_BUILD", "generic")
    generic = dev.install_stamp()
    assert generic != auto
    # The stamp of the venvs installed before the build step (pyproject.toml's hash alone) differs.
    assert hashlib.sha256((Path(__file__).parent.parent / "pyproject.toml").read_bytes()).hexdigest() not in {
        auto,
        generic,
    }


# --- the system check --------------------------------------------------------------------------

FAKE_PACKAGE = "fake_argon2_bindings"
BINARY = b"\x7fELF not really a binary"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake installed bindings package and /proc/cpuinfo, which the check reads."""
    package = tmp_path / "site" / FAKE_PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "_ffi.abi3.so").write_bytes(BINARY)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(argon2_build, "PACKAGE", FAKE_PACKAGE)
    monkeypatch.setattr(argon2_build, "CPUINFO", tmp_path / "cpuinfo")
    return package


def _record(package: Path, **fields: object) -> None:
    record: dict[str, object] = {
        "build": "avx2",
        "cflags": "-mavx2",
        "requires": ["avx2"],
        "machine": platform.machine(),
        "version": "26.2.0",
        "binary": "_ffi.abi3.so",
        "sha256": hashlib.sha256(BINARY).hexdigest(),
    }
    record.update(fields)
    (package / argon2_build.RECORD_NAME).write_text(json.dumps(record))


def _cpu(installed: Path, flags: str) -> None:
    (installed.parent.parent / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")


def _ids(messages: list[object]) -> list[tuple[type, str]]:
    return [(type(message), message.id) for message in messages]  # type: ignore[attr-defined]


def test_the_check_passes_on_this_machine() -> None:
    # Whatever build this environment has, it runs here (the suite above just used it).
    assert [m for m in check_argon2_build(None) if isinstance(m, Error)] == []


def test_an_avx2_build_on_a_cpu_with_avx2_passes(installed: Path) -> None:
    _record(installed)
    _cpu(installed, "fpu sse2 avx avx2")
    assert check_argon2_build(None) == []


def test_an_avx2_build_on_a_cpu_without_avx2_is_an_error(installed: Path) -> None:
    _record(installed)
    _cpu(installed, "fpu sse2 ssse3 avx")
    messages = check_argon2_build(None)
    assert _ids(messages) == [(Error, "identity.E020")]
    assert "lacks avx2" in messages[0].msg
    assert "SIGILL" in messages[0].msg
    assert "python -m common.argon2_build" in messages[0].hint
    # And `manage.py check` (each node's start-up, docs/operators.md) stops on it.
    with pytest.raises(SystemCheckError, match=r"identity\.E020"):
        call_command("check")


def test_an_avx512_build_needs_avx512f(installed: Path) -> None:
    _record(installed, build="avx512", cflags="-mavx2 -mavx512f", requires=["avx2", "avx512f"])
    _cpu(installed, "sse2 avx avx2")
    messages = check_argon2_build(None)
    assert _ids(messages) == [(Error, "identity.E020")]
    assert "lacks avx512f" in messages[0].msg
    _cpu(installed, "sse2 avx avx2 avx512f avx512bw")
    assert check_argon2_build(None) == []


def test_a_build_for_another_machine_is_an_error(installed: Path) -> None:
    _record(installed, machine="riscv64")
    _cpu(installed, "avx2")
    assert _ids(check_argon2_build(None)) == [(Error, "identity.E021")]


def test_the_generic_build_or_no_record_needs_nothing(installed: Path) -> None:
    _cpu(installed, "fpu sse2")
    assert check_argon2_build(None) == []  # no record: PyPI's wheel as pip installed it
    _record(installed, build="generic", cflags="", requires=[])
    assert check_argon2_build(None) == []


def test_a_record_of_another_binary_is_a_warning(installed: Path) -> None:
    _record(installed, sha256=hashlib.sha256(b"the binary built then").hexdigest())
    _cpu(installed, "fpu sse2")
    messages = check_argon2_build(None)
    assert _ids(messages) == [(Warning, "identity.W020")]
    assert "reinstalled" in messages[0].msg


def test_an_unreadable_record_is_a_warning(installed: Path) -> None:
    (installed / argon2_build.RECORD_NAME).write_text("{not json")
    _cpu(installed, "avx2")
    assert _ids(check_argon2_build(None)) == [(Warning, "identity.W021")]
    _record(installed)
    record = json.loads((installed / argon2_build.RECORD_NAME).read_text())
    del record["requires"]
    (installed / argon2_build.RECORD_NAME).write_text(json.dumps(record))
    assert _ids(check_argon2_build(None)) == [(Warning, "identity.W021")]


def test_a_cpu_that_cannot_be_read_is_a_warning_for_a_simd_build(installed: Path) -> None:
    _record(installed)
    (installed.parent.parent / "cpuinfo").write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    messages = check_argon2_build(None)
    assert _ids(messages) == [(Warning, "identity.W022")]
    assert "avx2" in messages[0].msg
