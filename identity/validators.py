"""Password rules per NIST SP 800-63B: length and a common-password list, no composition rules."""

from __future__ import annotations

from django.contrib.auth.password_validation import CommonPasswordValidator as DjangoCommonPasswordValidator
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext


class LengthValidator:
    def __init__(self, min_length: int = 8, max_length: int = 128) -> None:
        self.min_length = min_length
        self.max_length = max_length

    def validate(self, password: str, user: object = None) -> None:
        if len(password) < self.min_length:
            raise ValidationError(
                ngettext(
                    "Le mot de passe doit contenir au moins %(min)d caractère.",
                    "Le mot de passe doit contenir au moins %(min)d caractères.",
                    self.min_length,
                ),
                code="password_too_short",
                params={"min": self.min_length},
            )
        if len(password) > self.max_length:
            raise ValidationError(
                _("Le mot de passe ne doit pas dépasser %(max)d caractères."),
                code="password_too_long",
                params={"max": self.max_length},
            )

    def get_help_text(self) -> str:
        return _(
            "Au moins %(min)d caractères. Une phrase de passe facile à retenir est idéale ; "
            "tous les caractères sont acceptés, espaces compris."
        ) % {"min": self.min_length}


class CommonPasswordValidator(DjangoCommonPasswordValidator):
    """Django's list of 20,000 common passwords plus French ones seen in breach corpora."""

    EXTRA = {
        "motdepasse",
        "motdepasse1",
        "motdepasse123",
        "azertyuiop",
        "azerty123",
        "azerty",
        "soleil123",
        "nantes44",
        "nantes2024",
        "bonjour123",
        "doudou123",
        "chocolat",
        "marseille",
        "loulou123",
        "jetaime",
        "jetaime123",
        "nantesmetropole",
    }

    def __init__(self) -> None:
        super().__init__()
        self.passwords = set(self.passwords) | self.EXTRA

    def validate(self, password: str, user: object = None) -> None:
        if password.lower().strip() in self.passwords:
            raise ValidationError(
                _("Ce mot de passe est trop courant : il figure dans les listes utilisées par les pirates."),
                code="password_too_common",
            )

    def get_help_text(self) -> str:
        return _("Évitez les mots de passe courants.")
