"""Password storage (Argon2id, legacy formats upgraded at sign-in) and NIST SP 800-63B rules.

Legacy hashes are built here independently (hashlib, bcrypt, argon2-cffi), the way the
older portals made them, never with our own hashers.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import argon2
import bcrypt
import pytest
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.hashers import (
    PBKDF2SHA1PasswordHasher,
    check_password,
    get_hasher,
    identify_hasher,
    make_password,
)
from django.contrib.auth.password_validation import CommonPasswordValidator as DjangoCommon
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.utils.module_loading import import_string

from identity.hashers import Argon2idHasher
from identity.models import User

OLD_PASSWORD = "ancien mot de passe du portail 2015"
WRONG_PASSWORD = "ancien mot de passe du portail 2016"
ARGON2_ENCODED = re.compile(
    r"^argon2\$(argon2id)\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$"
)

OWASP_MIN_MEMORY_KIB = 19 * 1024
OWASP_MIN_TIME = 2
OWASP_MIN_PARALLELISM = 1


# --- Argon2id for new passwords ------------------------------------------------------------


def test_new_password_is_stored_with_argon2id(make_resident: Any) -> None:
    user = make_resident("argon@example.org", password="une phrase de passe bien longue")
    user.refresh_from_db()
    match = ARGON2_ENCODED.match(user.password)
    assert match, user.password
    assert match.group(1) == "argon2id"
    assert user.check_password("une phrase de passe bien longue")
    assert not user.check_password("une phrase de passe bien courte")


def test_preferred_hasher_is_our_argon2id() -> None:
    preferred = import_string(settings.PASSWORD_HASHERS[0])
    assert issubclass(preferred, Argon2idHasher)
    assert get_hasher("default").algorithm == "argon2"


def test_real_argon2id_parameters_meet_owasp_minimum() -> None:
    # Class attributes, then one real hash at full cost, parsed from the encoded string.
    assert Argon2idHasher.memory_cost >= OWASP_MIN_MEMORY_KIB
    assert Argon2idHasher.time_cost >= OWASP_MIN_TIME
    assert Argon2idHasher.parallelism >= OWASP_MIN_PARALLELISM

    hasher = Argon2idHasher()
    encoded = hasher.encode("une phrase de passe bien longue", hasher.salt())
    match = ARGON2_ENCODED.match(encoded)
    assert match, encoded
    variant, memory, time_cost, parallelism = match.group(1), *map(int, match.groups()[1:])
    assert variant == "argon2id"
    assert memory >= OWASP_MIN_MEMORY_KIB
    assert time_cost >= OWASP_MIN_TIME
    assert parallelism >= OWASP_MIN_PARALLELISM
    # Independent check with argon2-cffi itself.
    params = argon2.extract_parameters(encoded.removeprefix("argon2"))
    assert params.type is argon2.Type.ID
    assert params.memory_cost == memory
    assert argon2.PasswordHasher().verify(encoded.removeprefix("argon2"), "une phrase de passe bien longue")
    assert hasher.verify("une phrase de passe bien longue", encoded)
    assert not hasher.verify("une phrase de passe bien courte", encoded)


def test_accented_password_matches_whichever_unicode_form_is_typed(make_resident: Any) -> None:
    composed = unicodedata.normalize("NFC", "mémé a été à Nantes")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    user = make_resident("accents@example.org", password=composed)
    assert authenticate(email="accents@example.org", password=decomposed) == user
    assert authenticate(email="accents@example.org", password="meme a ete a Nantes") is None


# --- legacy formats, verified then upgraded at sign-in -------------------------------------


def _pbkdf2_sha256(password: str) -> str:
    return make_password(password, hasher="pbkdf2_sha256")


def _pbkdf2_sha1(password: str) -> str:
    return make_password(password, hasher=PBKDF2SHA1PasswordHasher())


def _raw_bcrypt(prefix: bytes) -> Callable[[str], str]:
    def build(password: str) -> str:
        raw = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4, prefix=b"2b"))
        return "bcrypt$" + (b"$" + prefix + raw[3:]).decode()

    return build


def _bcrypt_sha256(password: str) -> str:
    # Django's format: bcrypt over the hex SHA-256 of the password.
    prehashed = binascii.hexlify(hashlib.sha256(password.encode()).digest())
    return "bcrypt_sha256$" + bcrypt.hashpw(prehashed, bcrypt.gensalt(rounds=4)).decode()


def _salted(name: str, order: str) -> Callable[[str], str]:
    def build(password: str) -> str:
        salt = "s3l$Ab"  # a "$" inside the salt is allowed: the digest is the last field
        material = salt + password if order == "sp" else password + salt
        return f"legacy_{name}${order}${salt}${hashlib.new(name, material.encode()).hexdigest()}"

    return build


def _argon2i(password: str) -> str:
    raw = argon2.low_level.hash_secret(
        password.encode(),
        b"legacysalt16byte",
        time_cost=2,
        memory_cost=256,
        parallelism=2,
        hash_len=32,
        type=argon2.low_level.Type.I,
    )
    return "argon2" + raw.decode()


LEGACY_FORMATS: dict[str, Callable[[str], str]] = {
    "pbkdf2_sha256": _pbkdf2_sha256,
    "pbkdf2_sha1": _pbkdf2_sha1,
    "bcrypt_2b": _raw_bcrypt(b"2b"),
    "bcrypt_2y": _raw_bcrypt(b"2y"),
    "bcrypt_2a": _raw_bcrypt(b"2a"),
    "bcrypt_sha256": _bcrypt_sha256,
    "sha1_salt_then_password": _salted("sha1", "sp"),
    "sha1_password_then_salt": _salted("sha1", "ps"),
    "sha256_salt_then_password": _salted("sha256", "sp"),
    "sha256_password_then_salt": _salted("sha256", "ps"),
    "argon2i": _argon2i,
}


@pytest.mark.parametrize("name", sorted(LEGACY_FORMATS))
def test_legacy_hash_verifies_and_is_upgraded_to_argon2id_at_sign_in(db: Any, name: str) -> None:
    encoded = LEGACY_FORMATS[name](OLD_PASSWORD)
    assert check_password(OLD_PASSWORD, encoded)
    assert not check_password(WRONG_PASSWORD, encoded)

    user = User.objects.create(email=f"{name}@example.org", password=encoded)

    assert authenticate(email=f"{name}@example.org", password=WRONG_PASSWORD) is None
    user.refresh_from_db()
    assert user.password == encoded  # a failed attempt changes nothing

    assert authenticate(email=f"{name.upper()}@Example.org", password=OLD_PASSWORD) == user
    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$"), user.password
    assert user.check_password(OLD_PASSWORD)
    assert not user.check_password(WRONG_PASSWORD)


def test_the_two_digest_orders_are_not_interchangeable() -> None:
    salt_first = _salted("sha256", "sp")(OLD_PASSWORD)
    swapped = salt_first.replace("legacy_sha256$sp$", "legacy_sha256$ps$", 1)
    assert check_password(OLD_PASSWORD, salt_first)
    assert not check_password(OLD_PASSWORD, swapped)


def test_uppercase_hex_digest_still_verifies() -> None:
    encoded = _salted("sha1", "sp")(OLD_PASSWORD)
    head, digest = encoded.rsplit("$", 1)
    assert check_password(OLD_PASSWORD, f"{head}${digest.upper()}")


def test_bcrypt_uses_only_the_first_72_bytes_like_the_original(db: Any) -> None:
    long_password = "é" * 50  # 100 bytes in UTF-8
    raw = bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(rounds=4))
    user = User.objects.create(email="long@example.org", password="bcrypt$" + raw.decode())
    assert authenticate(email="long@example.org", password=long_password) == user
    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$")
    # After the upgrade the whole password counts.
    assert not user.check_password("é" * 36 + "x")


@pytest.mark.parametrize("algorithm", ["bcrypt", "legacy_sha1", "legacy_sha256"])
def test_verify_only_hashers_never_create_hashes(algorithm: str) -> None:
    with pytest.raises(NotImplementedError):
        make_password("une phrase de passe bien longue", hasher=algorithm)
    hasher = get_hasher(algorithm)
    with pytest.raises(NotImplementedError):
        hasher.encode("une phrase de passe bien longue", "salt")


@pytest.mark.parametrize(
    "encoded",
    [
        "argon2$argon2id$v=19$m=oops",
        "argon2$nonsense",
        "bcrypt$$2b$04$tooshort",
        "bcrypt$$2x$04$" + "a" * 53,
        "legacy_sha256$sp$salt$nothex",
        "legacy_sha256$xx$salt$" + "0" * 64,
        "legacy_sha1$sp$" + "0" * 40,
    ],
)
def test_malformed_stored_hash_is_a_failed_sign_in_not_an_error(db: Any, encoded: str) -> None:
    User.objects.create(email="broken@example.org", password=encoded)
    assert authenticate(email="broken@example.org", password=OLD_PASSWORD) is None
    identify_hasher(encoded)  # known algorithm: the hasher itself had to cope


# --- NIST SP 800-63B rules -----------------------------------------------------------------


def _codes(password: str) -> list[str]:
    try:
        validate_password(password, User(email="resident@example.org", given_name="Camille"))
    except ValidationError as exc:
        return [error.code for error in exc.error_list]
    return []


def test_seven_characters_refused_in_french() -> None:
    with pytest.raises(ValidationError) as excinfo:
        validate_password("k7#pQz!", User(email="resident@example.org"))
    assert [error.code for error in excinfo.value.error_list] == ["password_too_short"]
    assert "au moins 8 caractères" in excinfo.value.messages[0]


def test_eight_characters_accepted() -> None:
    assert _codes("k7#pQz!m") == []


def test_long_passphrase_with_spaces_accents_and_emoji_accepted_up_to_128() -> None:
    unit = "Le héron cendré pêche à l'aube sur l'Erdre 🐟 "  # 45 characters
    passphrase = (unit * 3)[:128]
    assert len(passphrase) == 128
    assert " " in passphrase and "é" in passphrase
    assert _codes(passphrase) == []
    assert _codes((unit * 5)[:200]) == ["password_too_long"]
    assert _codes((unit * 3)[:129]) == ["password_too_long"]


@pytest.mark.parametrize(
    "password", ["motdepasse", "password123", "Password123", "  azerty123 ", "nantes2024"]
)
def test_common_passwords_refused_in_french(password: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        validate_password(password, User(email="resident@example.org"))
    assert "password_too_common" in [error.code for error in excinfo.value.error_list]
    assert any("trop courant" in message for message in excinfo.value.messages)


def test_french_additions_extend_djangos_list() -> None:
    assert "nantes2024" not in DjangoCommon().passwords
    assert _codes("nantes2024") == ["password_too_common"]


@pytest.mark.parametrize(
    "password",
    [
        "le chat de la voisine dort au soleil",  # lowercase letters and spaces only
        "correcthorsebatterystaple",
        "12345678901234567890123",  # digits only, but not a known one
    ],
)
def test_no_composition_rules(password: str) -> None:
    assert _codes(password) == []
