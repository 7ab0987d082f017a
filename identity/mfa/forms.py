"""Forms of the second-factor pages (rendered by templates/identity/_field.html)."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from identity.mfa.services import BACKUP_CODE_LENGTH, FACTOR_NAME_MAX, normalize_backup_code
from identity.mfa.totp import normalize_code


def throttled_error(seconds: int) -> ValidationError:
    """The readable refusal of the per-factor throttle (exponential: 1, 2, 4, 8 … seconds)."""
    if seconds < 120:
        message = ngettext(
            "Trop d'essais incorrects. Par sécurité, attendez %(count)d seconde avant de réessayer.",
            "Trop d'essais incorrects. Par sécurité, attendez %(count)d secondes avant de réessayer.",
            seconds,
        )
        count = seconds
    else:
        count = (seconds + 59) // 60
        message = ngettext(
            "Trop d'essais incorrects. Par sécurité, attendez %(count)d minute avant de réessayer.",
            "Trop d'essais incorrects. Par sécurité, attendez %(count)d minutes avant de réessayer.",
            count,
        )
    return ValidationError(message, code="throttled", params={"count": count})


def _code_widget() -> forms.TextInput:
    return forms.TextInput(
        attrs={
            "autocomplete": "one-time-code",
            "inputmode": "numeric",
            "autocapitalize": "none",
            "spellcheck": "false",
            "maxlength": "12",
            "class": "input--code",
        }
    )


class TOTPCodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code à 6 chiffres"),
        help_text=_("Le code affiché en ce moment par votre application d'authentification."),
        max_length=12,
        widget=_code_widget(),
    )

    def clean_code(self) -> str:
        code = normalize_code(self.cleaned_data["code"])
        if len(code) != 6 or not code.isdigit():
            raise ValidationError(_("Saisissez les 6 chiffres du code, sans lettre."), code="format")
        return code


class TOTPEnrolForm(TOTPCodeForm):
    name = forms.CharField(
        label=_("Nom de cet appareil"),
        help_text=_("Pour le reconnaître dans la liste, par exemple « Téléphone de Camille »."),
        max_length=FACTOR_NAME_MAX,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )

    field_order = ["code", "name"]


class BackupCodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code de secours"),
        help_text=_(
            "Un des 10 codes que vous avez conservés, par exemple ABCDE-FGHJK. "
            "Chaque code ne sert qu'une fois."
        ),
        max_length=32,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "autocapitalize": "characters",
                "spellcheck": "false",
                "class": "input--code",
            }
        ),
    )

    def clean_code(self) -> str:
        code = normalize_backup_code(self.cleaned_data["code"])
        if len(code) != BACKUP_CODE_LENGTH:
            raise ValidationError(
                _("Un code de secours compte %(length)d caractères (lettres et chiffres)."),
                code="format",
                params={"length": BACKUP_CODE_LENGTH},
            )
        return code


class FactorNameForm(forms.Form):
    name = forms.CharField(
        label=_("Nom"),
        max_length=FACTOR_NAME_MAX,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise ValidationError(_("Donnez un nom."), code="required")
        return name


class PasskeyNameForm(forms.Form):
    name = forms.CharField(
        label=_("Nom de la clé d'accès"),
        help_text=_("Pour la reconnaître dans la liste, par exemple « Ordinateur du bureau »."),
        max_length=FACTOR_NAME_MAX,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
