"""Forms of the resident pages.

Rendering is done field by field by templates/identity/_field.html: Django 5.2 already
puts `aria-invalid` and `aria-describedby="<id>_helptext <id>_error"` on a widget whose
field has help text or errors; the template gives those ids to the help and error texts.
Browsers' own validation is switched off (`novalidate`) so every error is ours, in the
same place and wording, and announced by the error summary.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import authenticate, password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from common.ratelimit import Block
from identity import ratelimit
from identity.communes import (
    Commune,
    commune_by_code,
    commune_for_address,
    communes,
    is_french_postcode,
    postcode_belongs,
)
from identity.email_backend import SignInLookup
from identity.models import User, normalize_email
from identity.phone import MAX_INPUT_LENGTH, phone_for_display, phone_to_e164
from identity.services import PostalAddress
from identity.signin import (
    login_record_blocked,
    login_record_failure,
    password_check_record_failure,
    user_for_sign_in,
)


def too_many_attempts(block: Block) -> ValidationError:
    return ValidationError(
        ngettext(
            "Trop de tentatives. Par sécurité, attendez %(minutes)d minute avant de réessayer.",
            "Trop de tentatives. Par sécurité, attendez %(minutes)d minutes avant de réessayer.",
            block.minutes,
        ),
        code="rate_limited",
        params={"minutes": block.minutes},
    )


def _email_widget() -> forms.EmailInput:
    return forms.EmailInput(attrs={"autocomplete": "email", "autocapitalize": "none", "spellcheck": "false"})


def _new_password_field(label: Any) -> forms.CharField:
    return forms.CharField(
        label=label,
        strip=False,
        max_length=1024,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )


def _password_help() -> str:
    return " ".join(str(text) for text in password_validation.password_validators_help_texts())


class LoginForm(AuthenticationForm):
    """Sign-in by email and password, behind the limits of identity.ratelimit.

    The field is still called `username` (Django's convention, and what password
    managers and our tests post).
    """

    username = forms.CharField(label=_("Adresse e-mail"), widget=_email_widget())
    password = forms.CharField(
        label=_("Mot de passe"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    error_messages = {
        "invalid_login": _(
            "Adresse e-mail ou mot de passe incorrect. Vérifiez votre saisie, "
            "ou choisissez un nouveau mot de passe si vous l'avez oublié."
        ),
        "inactive": _("Adresse e-mail ou mot de passe incorrect."),
    }

    def __init__(self, request: HttpRequest | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(request, *args, **kwargs)
        self.throttle: ratelimit.LoginThrottle | None = None

    def clean(self) -> dict[str, Any]:
        email = normalize_email(self.cleaned_data.get("username") or "")
        password = self.cleaned_data.get("password")
        if not email or password is None or self.request is None:
            return self.cleaned_data
        account = user_for_sign_in(email)  # the one read of the account (identity.signin)
        self.throttle = ratelimit.LoginThrottle(self.request, email, account)
        block = self.throttle.check()
        if block is not None:
            # Refused before the password is even looked at.
            login_record_blocked(user=self.throttle.user, ip=self.throttle.ip, scope=block.scope)
            raise too_many_attempts(block)
        user = authenticate(
            self.request, username=email, password=password, lookup=SignInLookup(email=email, user=account)
        )
        if user is None:
            if self.throttle.user is None:
                # The throttle audits failures of existing accounts; an unknown address
                # is recorded too, without the address.
                login_record_failure(user=None, ip=self.throttle.ip)
            block = self.throttle.failed()
            if block is not None:
                raise too_many_attempts(block)
            raise ValidationError(self.error_messages["invalid_login"], code="invalid_login")
        self.user_cache = user
        return self.cleaned_data


class RegistrationForm(forms.Form):
    email = forms.EmailField(
        label=_("Adresse e-mail"),
        max_length=254,
        help_text=_("Nous vous enverrons un lien pour la confirmer."),
        widget=_email_widget(),
    )
    given_name = forms.CharField(
        label=_("Prénom"), max_length=150, widget=forms.TextInput(attrs={"autocomplete": "given-name"})
    )
    family_name = forms.CharField(
        label=_("Nom"), max_length=150, widget=forms.TextInput(attrs={"autocomplete": "family-name"})
    )
    password = _new_password_field(_("Mot de passe"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["password"].help_text = _password_help()

    def clean_email(self) -> str:
        return normalize_email(self.cleaned_data["email"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        password = cleaned.get("password")
        if password:
            candidate = User(
                email=cleaned.get("email", ""),
                given_name=cleaned.get("given_name", ""),
                family_name=cleaned.get("family_name", ""),
            )
            try:
                password_validation.validate_password(password, candidate)
            except ValidationError as error:
                self.add_error("password", error)
        return cleaned


class EmailForm(forms.Form):
    """One email address: verification resend and password-reset request."""

    email = forms.EmailField(label=_("Adresse e-mail"), max_length=254, widget=_email_widget())

    def clean_email(self) -> str:
        return normalize_email(self.cleaned_data["email"])


def check_current_password(user: User, current: str) -> str:
    """The signed-in resident's current password, behind its own limit (a stolen session
    must not be a way to guess it)."""
    block = ratelimit.password_check_block(user)
    if block is not None:
        raise too_many_attempts(block)
    if not user.check_password(current):
        password_check_record_failure(user=user)
        block = ratelimit.password_check_failed(user)
        if block is not None:
            raise too_many_attempts(block)
        raise ValidationError(_("Le mot de passe actuel est incorrect."), code="password_incorrect")
    return current


class SetPasswordForm(forms.Form):
    """A new password chosen through a reset link (one field: it can be shown again by
    the browser's password manager, and a mistyped one is fixed with another reset)."""

    new_password = _new_password_field(_("Nouveau mot de passe"))

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        self.user = user
        super().__init__(*args, **kwargs)
        self.fields["new_password"].help_text = _password_help()

    def clean_new_password(self) -> str:
        password = self.cleaned_data["new_password"]
        password_validation.validate_password(password, self.user)
        return password


class PasswordChangeForm(SetPasswordForm):
    current_password = forms.CharField(
        label=_("Mot de passe actuel"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    field_order = ["current_password", "new_password"]

    def clean_current_password(self) -> str:
        return check_current_password(self.user, self.cleaned_data["current_password"])


class ResetSecondFactorForm(forms.Form):
    """The reason an operator gives for resetting a resident's second factor (admin action)."""

    reason = forms.CharField(
        label=_("Motif (sans donnée personnelle)"),
        max_length=200,
        help_text=_(
            "Par exemple : « téléphone perdu, identité vérifiée au guichet, ticket 1234 ». "
            "N'écrivez ni nom, ni adresse, ni numéro de pièce d'identité."
        ),
    )


# --- personal information -----------------------------------------------------------------

OTHER_COMMUNE = "autre"
COUNTRY_FRANCE = "France"


def _commune_choices() -> list[tuple[str, Any]]:
    return [
        ("", _("Pas d'adresse")),
        *((commune.insee_code, commune.name) for commune in communes()),
        (OTHER_COMMUNE, _("Autre commune en France")),
    ]


class PersonalInformationForm(forms.Form):
    """Names, phone number and postal address of the signed-in resident.

    The commune is one of the metropolis's 24 (its postcode must serve it) or "another
    commune in France" (typed in, with a French postcode). The phone number is stored in
    E.164; it is not verified.
    """

    given_name = forms.CharField(
        label=_("Prénom"), max_length=150, widget=forms.TextInput(attrs={"autocomplete": "given-name"})
    )
    family_name = forms.CharField(
        label=_("Nom"), max_length=150, widget=forms.TextInput(attrs={"autocomplete": "family-name"})
    )
    phone_number = forms.CharField(
        label=_("Numéro de téléphone"),
        required=False,
        max_length=MAX_INPUT_LENGTH,
        help_text=_("Par exemple 06 12 34 56 78, ou +32 470 12 34 56 pour un numéro étranger."),
        widget=forms.TextInput(attrs={"autocomplete": "tel", "inputmode": "tel", "type": "tel"}),
    )
    street_address = forms.CharField(
        label=_("Numéro et rue"),
        required=False,
        max_length=255,
        help_text=_("Par exemple : 2 rue de l'Hôtel de Ville, appartement 12."),
        widget=forms.TextInput(attrs={"autocomplete": "street-address"}),
    )
    commune = forms.ChoiceField(label=_("Commune"), required=False, choices=_commune_choices)
    other_locality = forms.CharField(
        label=_("Autre commune"),
        required=False,
        max_length=120,
        help_text=_("Seulement si vous avez choisi « Autre commune en France »."),
        widget=forms.TextInput(attrs={"autocomplete": "address-level2"}),
    )
    postal_code = forms.CharField(
        label=_("Code postal"),
        required=False,
        max_length=8,  # "44 000" is read as 44000
        help_text=_("Cinq chiffres, par exemple 44000."),
        widget=forms.TextInput(attrs={"autocomplete": "postal-code", "inputmode": "numeric"}),
    )

    @classmethod
    def initial_for(cls, user: User) -> dict[str, str]:
        """The form's values for what the resident's account holds now."""
        commune = commune_for_address(user.locality, user.postal_code)
        if commune is not None:
            choice, other = commune.insee_code, ""
        elif user.locality:
            choice, other = OTHER_COMMUNE, user.locality
        else:
            choice, other = "", ""
        return {
            "given_name": user.given_name,
            "family_name": user.family_name,
            "phone_number": phone_for_display(user.phone_number),
            "street_address": user.street_address,
            "commune": choice,
            "other_locality": other,
            "postal_code": user.postal_code,
        }

    def clean_phone_number(self) -> str:
        value = self.cleaned_data["phone_number"].strip()
        if not value:
            return ""
        e164 = phone_to_e164(value)
        if e164 is None:
            raise ValidationError(
                _(
                    "Ce numéro de téléphone n'est pas valide. Écrivez-le comme 06 12 34 56 78, "
                    "ou avec l'indicatif du pays pour un numéro étranger (+32 …)."
                ),
                code="invalid_phone",
            )
        return e164

    def clean_postal_code(self) -> str:
        return "".join(self.cleaned_data["postal_code"].split())

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        choice = cleaned.get("commune", "")
        street = cleaned.get("street_address", "").strip()
        other = cleaned.get("other_locality", "").strip()
        postcode = cleaned.get("postal_code", "")
        if not choice:
            if street or other or postcode:
                self.add_error("commune", _("Choisissez votre commune, ou « Autre commune en France »."))
            cleaned["address"] = PostalAddress()
            return cleaned
        postcode_ok = self._check_postcode(postcode)
        if choice == OTHER_COMMUNE:
            if not other:
                self.add_error("other_locality", _("Indiquez le nom de votre commune."))
            locality = other
        else:
            commune = commune_by_code(choice)
            locality = commune.name if commune is not None else ""
            if commune is not None and postcode_ok:
                self._check_commune_postcode(commune, postcode)
        cleaned["address"] = PostalAddress(
            street_address=street, locality=locality, postal_code=postcode, country=COUNTRY_FRANCE
        )
        return cleaned

    def _check_postcode(self, postcode: str) -> bool:
        if not postcode:
            self.add_error("postal_code", _("Indiquez le code postal."))
            return False
        if not is_french_postcode(postcode):
            message = _("Le code postal doit être un code postal français de cinq chiffres.")
            self.add_error("postal_code", message)
            return False
        return True

    def _check_commune_postcode(self, commune: Commune, postcode: str) -> None:
        """A commune of the metropolis: the postcode must be one of its own."""
        if postcode_belongs(commune.insee_code, postcode):
            return
        self.add_error(
            "postal_code",
            _("Le code postal %(postcode)s n'est pas celui de %(commune)s (%(expected)s).")
            % {"postcode": postcode, "commune": commune.name, "expected": ", ".join(commune.postal_codes)},
        )


class EmailChangeForm(forms.Form):
    """A new sign-in address, confirmed by the current password (accounts that have one)."""

    new_email = forms.EmailField(
        label=_("Nouvelle adresse e-mail"),
        max_length=254,
        help_text=_("Nous y enverrons un lien : l'adresse change quand vous l'ouvrez."),
        widget=_email_widget(),
    )
    current_password = forms.CharField(
        label=_("Mot de passe actuel"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        self.user = user
        super().__init__(*args, **kwargs)
        if not user.has_usable_password():
            # An account without a password (FranceConnect only): the view asks for a
            # recent sign-in instead.
            del self.fields["current_password"]

    def clean_new_email(self) -> str:
        email = normalize_email(self.cleaned_data["new_email"])
        if email == self.user.email:
            raise ValidationError(_("C'est déjà l'adresse de votre compte."), code="same_email")
        return email

    def clean_current_password(self) -> str:
        return check_current_password(self.user, self.cleaned_data["current_password"])
