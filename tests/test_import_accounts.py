"""import_accounts: migration of the legacy metropolitan account from JSON lines.

Hashes are made here the way the legacy portals made them (hashlib, bcrypt, Django's own
hashers for Django-style strings), then the residents sign in with their old passwords.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import argon2
import bcrypt
import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client as BrowserClient

from identity.models import AuditEvent, User

PASSWORDS = {
    "pbkdf2": "vieux mot de passe pbkdf2",
    "bcrypt_2b": "vieux mot de passe bcrypt 2b",
    "bcrypt_2y": "vieux mot de passe bcrypt 2y",
    "bcrypt_sha256": "vieux mot de passe bcrypt sha256",
    "argon2": "vieux mot de passe argon2",
    "sha1": "vieux mot de passe sha1",
    "sha256": "vieux mot de passe sha256",
}


def sha_salted(name: str, password: str, salt: str, *, salt_first: bool = True) -> str:
    material = salt + password if salt_first else password + salt
    return f"{name}${salt}${hashlib.new(name, material.encode()).hexdigest()}"


def legacy_hashes() -> dict[str, str]:
    raw_2b = bcrypt.hashpw(PASSWORDS["bcrypt_2b"].encode(), bcrypt.gensalt(rounds=4)).decode()
    raw_2y = "$2y$" + bcrypt.hashpw(PASSWORDS["bcrypt_2y"].encode(), bcrypt.gensalt(rounds=4)).decode()[4:]
    prehashed = binascii.hexlify(hashlib.sha256(PASSWORDS["bcrypt_sha256"].encode()).digest())
    argon = argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1).hash(PASSWORDS["argon2"])
    return {
        "pbkdf2": PBKDF2PasswordHasher().encode(PASSWORDS["pbkdf2"], "legacysalt", iterations=20_000),
        "bcrypt_2b": raw_2b,
        "bcrypt_2y": raw_2y,
        "bcrypt_sha256": "bcrypt_sha256$" + bcrypt.hashpw(prehashed, bcrypt.gensalt(rounds=4)).decode(),
        "argon2": "argon2" + argon,
        "sha1": sha_salted("sha1", PASSWORDS["sha1"], "x9F2"),
        # Some exports wrote the hex digest in upper case.
        "sha256": "sha256$Qm7p$"
        + hashlib.sha256(("Qm7p" + PASSWORDS["sha256"]).encode()).hexdigest().upper(),
    }


def row(email: Any, password_hash: Any, **extra: Any) -> str:
    data = {
        "email": email,
        "given_name": "Camille",
        "family_name": "Martin",
        "email_verified": True,
        "password_hash": password_hash,
    }
    data.update(extra)
    return json.dumps({k: v for k, v in data.items() if v is not ...}, ensure_ascii=False)


def run_import(*args: str) -> tuple[str, str, CommandError | None]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_accounts", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), err.getvalue(), exc
    return out.getvalue(), err.getvalue(), None


@pytest.fixture
def legacy_file(db: Any, tmp_path: Path) -> Path:
    hashes = legacy_hashes()
    lines = [
        row(f"{name}@Example.org", hashes[name], legacy_id=index, preferred_language="fr-FR")  # lines 1-7
        for index, name in enumerate(PASSWORDS, start=1)
    ]
    lines += [
        '{"email": "broken@example.org", "password_hash": ',  # 8 invalid JSON
        row(..., hashes["sha1"]),  # 9 missing email
        row("pas-une-adresse", hashes["sha1"]),  # 10 bad email
        row("md5@example.org", "md5$salt$5f4dcc3b5aa765d61d8327deb882cf99"),  # 11 unknown hash format
        row("SHA1@example.org", hashes["sha256"]),  # 12 duplicate of line 6
        row("bool@example.org", hashes["sha1"], email_verified="yes"),  # 13 bad bool
        "",  # 14 blank: ignored
        row("english@example.org", hashes["sha1"], preferred_language="en", email_verified=False),  # 15
        "[1, 2, 3]",  # 16 not an object
    ]
    path = tmp_path / "legacy.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


EXPECTED_REJECTIONS = {
    8: "invalid JSON",
    9: "missing email",
    10: "malformed email",
    11: "unknown password hash format",
    12: "duplicate email within the file",
    13: "email_verified must be true or false",
    16: "not a JSON object",
}


def rejected_lines(err: str) -> dict[int, str]:
    found = {}
    for message in err.splitlines():
        if ": rejected: " in message:
            head, reason = message.split(": rejected: ", 1)
            found[int(head.removeprefix("line "))] = reason
    return found


def test_import_creates_accounts_reports_bad_rows_and_exits_non_zero(
    legacy_file: Path, tmp_path: Path
) -> None:
    report = tmp_path / "rejected.jsonl"
    out, err, error = run_import(str(legacy_file), "--report", str(report))

    assert error is not None and error.returncode == 1
    assert "7 row(s) rejected" in str(error)

    found = rejected_lines(err)
    assert set(found) == set(EXPECTED_REJECTIONS)
    for line, reason in EXPECTED_REJECTIONS.items():
        assert found[line].startswith(reason), (line, found[line])
    assert "@" not in err  # no address in the operator's logs

    assert "15 rows read: 8 imported, 0 skipped (already present), 7 rejected" in out

    emails = set(User.objects.values_list("email", flat=True))
    assert emails == {f"{name}@example.org" for name in PASSWORDS} | {"english@example.org"}
    english = User.objects.get(email="english@example.org")
    assert (english.preferred_language, english.email_verified) == ("en", False)
    camille = User.objects.get(email="pbkdf2@example.org")
    assert (camille.given_name, camille.family_name, camille.preferred_language) == (
        "Camille",
        "Martin",
        "fr",
    )
    assert camille.email_verified is True

    stored = dict(User.objects.values_list("email", "password"))
    assert stored["bcrypt_2b@example.org"].startswith("bcrypt$$2b$")
    assert stored["bcrypt_2y@example.org"].startswith("bcrypt$$2y$")
    assert stored["sha1@example.org"].startswith("legacy_sha1$sp$x9F2$")
    expected_hex = hashlib.sha256(("Qm7p" + PASSWORDS["sha256"]).encode()).hexdigest()
    assert stored["sha256@example.org"] == f"legacy_sha256$sp$Qm7p${expected_hex}"
    assert stored["pbkdf2@example.org"].startswith("pbkdf2_sha256$20000$")

    audits = AuditEvent.objects.filter(event="account.imported")
    assert audits.count() == 8
    assert set(audits.values_list("subject_user_id", flat=True)) == set(
        User.objects.values_list("id", flat=True)
    )
    audit = audits.get(subject_user_id=camille.pk)
    assert audit.data["legacy_id"] == "1" and audit.data["hash_scheme"] == "pbkdf2_sha256"

    reported = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert [entry["line"] for entry in reported] == sorted(EXPECTED_REJECTIONS)
    assert reported[0]["row"].startswith('{"email": "broken@example.org"')
    assert report.stat().st_mode & 0o077 == 0


def test_rerun_is_idempotent_and_never_overwrites(legacy_file: Path) -> None:
    run_import(str(legacy_file))
    passwords_before = dict(User.objects.values_list("email", "password"))
    audits_before = AuditEvent.objects.count()

    out, err, error = run_import(str(legacy_file), "--verbosity", "2")

    assert "0 imported, 8 skipped (already present), 7 rejected" in out
    assert err.count("skipped: already present") == 8
    assert set(rejected_lines(err)) == set(EXPECTED_REJECTIONS)
    assert error is not None and error.returncode == 1
    assert dict(User.objects.values_list("email", "password")) == passwords_before
    assert AuditEvent.objects.count() == audits_before


def test_existing_account_is_skipped_and_keeps_its_password(make_resident: Any, tmp_path: Path) -> None:
    make_resident("existing@example.org", password="le mot de passe actuel")
    path = tmp_path / "one.jsonl"
    path.write_text(row("Existing@example.org", sha_salted("sha1", "un autre", "s")) + "\n", encoding="utf-8")

    out, _, error = run_import(str(path))

    assert error is None
    assert "0 imported, 1 skipped (already present), 0 rejected" in out
    assert authenticate(email="existing@example.org", password="le mot de passe actuel") is not None
    assert authenticate(email="existing@example.org", password="un autre") is None


@pytest.mark.parametrize("name", sorted(PASSWORDS))
def test_imported_resident_signs_in_with_old_password_and_hash_is_upgraded(
    legacy_file: Path, name: str
) -> None:
    run_import(str(legacy_file))
    email = f"{name}@example.org"
    before = User.objects.get(email=email).password
    assert not before.startswith("argon2$argon2id$") or name == "argon2"

    assert authenticate(email=email, password=PASSWORDS[name] + "?") is None
    assert authenticate(email=email, password=PASSWORDS[name]) is not None

    after = User.objects.get(email=email).password
    assert after.startswith("argon2$argon2id$") and after != before


def test_imported_resident_signs_in_through_the_login_form(legacy_file: Path) -> None:
    run_import(str(legacy_file))
    browser = BrowserClient()

    refused = browser.post("/connexion/", {"username": "sha1@example.org", "password": "pas le bon"})
    assert refused.status_code == 200
    assert User.objects.get(email="sha1@example.org").password.startswith("legacy_sha1$")

    response = browser.post("/connexion/", {"username": "SHA1@example.org", "password": PASSWORDS["sha1"]})
    assert response.status_code == 302, response.content[:300]
    assert User.objects.get(email="sha1@example.org").password.startswith("argon2$argon2id$")
    assert browser.get("/compte/").status_code == 200


def test_password_then_salt_digests_with_digest_order_option(db: Any, tmp_path: Path) -> None:
    path = tmp_path / "ps.jsonl"
    path.write_text(
        row("ps@example.org", sha_salted("sha256", "poivre et sel", "NaCl", salt_first=False)) + "\n",
        encoding="utf-8",
    )
    _, _, error = run_import(str(path), "--digest-order", "ps")
    assert error is None
    assert User.objects.get().password.startswith("legacy_sha256$ps$NaCl$")
    assert authenticate(email="ps@example.org", password="poivre et sel") is not None


def test_dry_run_validates_and_writes_nothing(legacy_file: Path) -> None:
    out, err, error = run_import(str(legacy_file), "--dry-run")
    assert "8 would be imported (dry run, nothing written)" in out
    assert set(rejected_lines(err)) == set(EXPECTED_REJECTIONS)
    assert error is not None and error.returncode == 1
    assert not User.objects.exists()
    assert not AuditEvent.objects.exists()


def test_clean_file_exits_zero(db: Any, tmp_path: Path) -> None:
    path = tmp_path / "clean.jsonl"
    path.write_text(row("clean@example.org", sha_salted("sha1", "propre", "s")) + "\n", encoding="utf-8")
    out, _, error = run_import(str(path))
    assert error is None
    assert "1 imported, 0 skipped (already present), 0 rejected" in out


@pytest.mark.parametrize(
    ("password_hash", "reason"),
    [
        ("sha1$salt$" + "0" * 39, "malformed sha1 hash"),
        ("sha256$salt$" + "z" * 64, "malformed sha256 hash"),
        ("$2b$04$tooshort", "malformed bcrypt hash"),
        ("$2b$31$" + "a" * 53, "bcrypt cost 31"),
        ("$2x$04$" + "a" * 53, "unknown password hash format"),
        ("pbkdf2_sha256$abc$salt$hash", "malformed pbkdf2_sha256 hash"),
        ("pbkdf2_sha256$99999999$salt$" + "A" * 43 + "=", "pbkdf2_sha256 iterations"),
        ("argon2$argon2id$v=19$m=4194304,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2g", "argon2 parameters"),
        ("argon2$argon2id$garbage", "malformed argon2 hash"),
        ("sha256$" + "s" * 60 + "$" + "0" * 64, "password hash longer than 128"),
        ("md5$salt$0123", "unknown password hash format"),
        ("5f4dcc3b5aa765d61d8327deb882cf99", "unknown password hash format"),
        ("", "missing password_hash"),
        (None, "missing password_hash"),
        ("sha1$s alt$" + "0" * 40, "password_hash contains whitespace"),
    ],
)
def test_bad_hashes_are_rejected_with_a_reason(
    db: Any, tmp_path: Path, password_hash: Any, reason: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(row("bad@example.org", password_hash) + "\n", encoding="utf-8")
    _, err, error = run_import(str(path))
    assert error is not None and error.returncode == 1
    assert rejected_lines(err)[1].startswith(reason), err
    assert not User.objects.exists()


def test_invalid_utf8_and_overlong_lines_are_rejected(db: Any, tmp_path: Path) -> None:
    path = tmp_path / "bytes.jsonl"
    good = row("ok@example.org", sha_salted("sha1", "bien", "s")).encode()
    path.write_bytes(b'{"email": "\xff\xfe"}\n' + b"x" * 70_000 + b"\n" + good + b"\n")
    out, err, _ = run_import(str(path))
    found = rejected_lines(err)
    assert found[1] == "not valid UTF-8"
    assert found[2].startswith("line longer than")
    assert "3 rows read: 1 imported" in out
    assert User.objects.get().email == "ok@example.org"


def test_reads_standard_input(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    data = row("stdin@example.org", sha_salted("sha1", "entree standard", "s")) + "\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data.encode()), encoding="utf-8"))
    _, _, error = run_import("-")
    assert error is None
    assert authenticate(email="stdin@example.org", password="entree standard") is not None


def test_missing_file_is_exit_code_2(db: Any, tmp_path: Path) -> None:
    _, _, error = run_import(str(tmp_path / "absent.jsonl"))
    assert error is not None and error.returncode == 2


def test_twenty_thousand_rows_in_batches_with_progress(db: Any, tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for index in range(20_000):
            salt = f"s{index}"
            handle.write(
                row(f"resident{index}@example.org", sha_salted("sha256", f"secret {index}", salt)) + "\n"
            )

    out, err, error = run_import(str(path), "--batch-size", "1000", "--progress-every", "5000")

    assert error is None, err[-500:]
    assert "20000 rows read: 20000 imported, 0 skipped (already present), 0 rejected" in out
    assert User.objects.count() == 20_000
    assert AuditEvent.objects.filter(event="account.imported").count() == 20_000
    progress = [line for line in err.splitlines() if "rows read" in line]
    assert [line.split(" rows read")[0] for line in progress] == ["5000", "10000", "15000", "20000"]
    assert "rows/s" in progress[0]
    assert authenticate(email="resident12345@example.org", password="secret 12345") is not None
    assert authenticate(email="resident12345@example.org", password="secret 12346") is None


def test_interrupted_import_is_completed_by_a_rerun(db: Any, tmp_path: Path) -> None:
    lines = [row(f"r{index}@example.org", sha_salted("sha1", f"pw {index}", "s")) for index in range(25)]
    partial, full = tmp_path / "partial.jsonl", tmp_path / "full.jsonl"
    partial.write_text("\n".join(lines[:10]) + "\n", encoding="utf-8")  # what got in before the kill
    full.write_text("\n".join(lines) + "\n", encoding="utf-8")

    run_import(str(partial), "--batch-size", "4")
    out, _, error = run_import(str(full), "--batch-size", "4")

    assert error is None
    assert "25 rows read: 15 imported, 10 skipped (already present), 0 rejected" in out
    assert User.objects.count() == 25
    assert AuditEvent.objects.filter(event="account.imported").count() == 25
