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
from identity.models import User, normalize_email
from identity.selectors import user_by_email
from identity.signin import login_record_blocked, login_record_failure, password_check_record_failure


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
        self.throttle = ratelimit.LoginThrottle(self.request, email, user_by_email(email))
        block = self.throttle.check()
        if block is not None:
            # Refused before the password is even looked at.
            login_record_blocked(user=self.throttle.user, ip=self.throttle.ip, scope=block.scope)
            raise too_many_attempts(block)
        user = authenticate(self.request, username=email, password=password)
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
        current = self.cleaned_data["current_password"]
        block = ratelimit.password_check_block(self.user)
        if block is not None:
            raise too_many_attempts(block)
        if not self.user.check_password(current):
            password_check_record_failure(user=self.user)
            block = ratelimit.password_check_failed(self.user)
            if block is not None:
                raise too_many_attempts(block)
            raise ValidationError(_("Le mot de passe actuel est incorrect."), code="password_incorrect")
        return current


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
