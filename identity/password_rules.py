"""Password rules per NIST SP 800-63B §5.1.1.2: length and a common-password list, nothing else.

- At least 8 characters, at most 128 (NIST: accept at least 64). Every character is
  allowed: spaces, accents, any Unicode. Length is counted in Unicode code points after
  NFKC normalisation, the form the password is hashed in (identity.hashers).
- Refused when found in a list of common passwords (Django's 20,000 plus French ones).
- No composition rules (no "one digit, one capital, one symbol"), no expiry.

Messages are in French through gettext.
"""

from __future__ import annotations

from django.contrib.auth.password_validation import CommonPasswordValidator as DjangoCommonPasswordValidator
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from identity.hashers import normalize_password

# French passwords seen in breach corpora and local favourites that Django's list lacks
# (entries already in Django's list are kept for readability; a set ignores them).
FRENCH_COMMON_PASSWORDS = frozenset(
    {
        "motdepasse",
        "motdepasse1",
        "motdepasse12",
        "motdepasse123",
        "motdepasse!",
        "motdepass",
        "mot2passe",
        "azerty",
        "azerty1",
        "azerty12",
        "azerty123",
        "azerty1234",
        "azertyuiop",
        "azertyuiop1",
        "azertyuiop123",
        "qsdfghjklm",
        "wxcvbn",
        "soleil",
        "soleil1",
        "soleil123",
        "bonjour",
        "bonjour1",
        "bonjour123",
        "bienvenue",
        "bienvenue1",
        "bienvenue123",
        "doudou",
        "doudou1",
        "doudou123",
        "loulou",
        "loulou1",
        "loulou123",
        "chouchou",
        "chouchou1",
        "chocolat",
        "chocolat1",
        "jetaime",
        "jetaime1",
        "jetaime123",
        "jetaimetoujours",
        "bisounours",
        "chouquette",
        "princesse",
        "marseille",
        "marseille13",
        "allezlom",
        "paris75",
        "nantes",
        "nantes44",
        "nantes2024",
        "nantes2025",
        "nantes2026",
        "nantais",
        "nantaise",
        "nantesmetropole",
        "fcnantes",
        "fcnantes44",
        "canaris",
        "allezlescanaris",
        "loireatlantique",
        "bretagne",
        "metropole",
        "compteunique",
    }
)


class LengthValidator:
    def __init__(self, min_length: int = 8, max_length: int = 128) -> None:
        self.min_length = min_length
        self.max_length = max_length

    def validate(self, password: str, user: object = None) -> None:
        length = len(normalize_password(password))
        if length < self.min_length:
            raise ValidationError(
                ngettext(
                    "Le mot de passe doit contenir au moins %(min)d caractère.",
                    "Le mot de passe doit contenir au moins %(min)d caractères.",
                    self.min_length,
                ),
                code="password_too_short",
                params={"min": self.min_length},
            )
        if length > self.max_length:
            raise ValidationError(
                ngettext(
                    "Le mot de passe ne doit pas dépasser %(max)d caractère.",
                    "Le mot de passe ne doit pas dépasser %(max)d caractères.",
                    self.max_length,
                ),
                code="password_too_long",
                params={"max": self.max_length},
            )

    def get_help_text(self) -> str:
        return _(
            "Au moins %(min)d caractères. Une phrase de passe facile à retenir est idéale ; "
            "tous les caractères sont acceptés, espaces et accents compris."
        ) % {"min": self.min_length}


class CommonPasswordValidator(DjangoCommonPasswordValidator):
    """Django's list of 20,000 common passwords plus French ones (FRENCH_COMMON_PASSWORDS)."""

    def __init__(self, password_list_path: str | None = None) -> None:
        if password_list_path is None:
            super().__init__()
        else:
            super().__init__(password_list_path)
        self.passwords = set(self.passwords) | FRENCH_COMMON_PASSWORDS

    def validate(self, password: str, user: object = None) -> None:
        if normalize_password(password).lower().strip() in self.passwords:
            raise ValidationError(
                _("Ce mot de passe est trop courant : il figure dans les listes utilisées par les pirates."),
                code="password_too_common",
            )

    def get_help_text(self) -> str:
        return _("Évitez les mots de passe courants.")
