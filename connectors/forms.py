"""The forms of Mon compte › Cartes et abonnements, one per connector kind: a library card
(card number + PIN), a Libertan transport card (card number + family name + birth date), a
Carte Blanche at the ticketing platform (card number + birth date).

Each form gives the protocol's (reference, secret) through `credentials()`; nothing a form
holds is stored but the card number (connectors.links seals it)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from connectors.library import KIND as LIBRARY_KIND
from connectors.library import MAX_CARD_LENGTH, MAX_PIN_LENGTH
from connectors.ticketing import KIND as TICKETING_KIND
from connectors.ticketing import MAX_CARD_LENGTH as MAX_TICKETING_CARD_LENGTH
from connectors.ticketing import link_secret as ticketing_secret
from connectors.transport import KIND as TRANSPORT_KIND
from connectors.transport import MAX_CARD_LENGTH as MAX_TRANSPORT_CARD_LENGTH
from connectors.transport import MAX_FAMILY_NAME_LENGTH, link_secret

_CARD_ATTRS = {"inputmode": "numeric", "autocomplete": "off", "autocapitalize": "none", "spellcheck": "false"}


class LibraryLinkForm(forms.Form):
    card_number = forms.CharField(
        label=_("Numéro de carte"),
        max_length=MAX_CARD_LENGTH + 8,  # spaces typed between groups of digits are removed
        help_text=_("Le numéro inscrit sous le code-barres de votre carte de bibliothèque."),
        widget=forms.TextInput(attrs=dict(_CARD_ATTRS)),
    )
    pin = forms.CharField(
        label=_("Code PIN de la carte"),
        max_length=MAX_PIN_LENGTH,
        strip=False,
        help_text=_("Celui que vous utilisez aux automates de prêt. Il n'est pas conservé."),
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "inputmode": "numeric"}),
    )

    def credentials(self) -> tuple[str, str]:
        return self.cleaned_data["card_number"], self.cleaned_data["pin"]


class TransportLinkForm(forms.Form):
    card_number = forms.CharField(
        label=_("Numéro de carte Libertan"),
        max_length=MAX_TRANSPORT_CARD_LENGTH + 8,
        help_text=_("Le numéro imprimé au dos de votre carte Libertan."),
        widget=forms.TextInput(attrs=dict(_CARD_ATTRS)),
    )
    family_name = forms.CharField(
        label=_("Nom de famille"),
        max_length=MAX_FAMILY_NAME_LENGTH,
        help_text=_("Celui qui figure sur votre dossier Naolib."),
        widget=forms.TextInput(attrs={"autocomplete": "family-name"}),
    )
    birth_date = forms.DateField(
        label=_("Date de naissance"),
        help_text=_("Elle est transmise à Naolib pour vérifier la carte, et n'est pas conservée."),
        input_formats=["%Y-%m-%d", "%d/%m/%Y"],
        widget=forms.DateInput(attrs={"type": "date", "autocomplete": "bday"}, format="%Y-%m-%d"),
    )

    def credentials(self) -> tuple[str, str]:
        secret = link_secret(
            family_name=self.cleaned_data["family_name"], birth_date=self.cleaned_data["birth_date"]
        )
        return self.cleaned_data["card_number"], secret


class TicketingLinkForm(forms.Form):
    card_number = forms.CharField(
        label=_("Numéro de Carte Blanche"),
        max_length=MAX_TICKETING_CARD_LENGTH + 8,
        help_text=_("Le numéro imprimé sur votre Carte Blanche."),
        widget=forms.TextInput(attrs=dict(_CARD_ATTRS)),
    )
    birth_date = forms.DateField(
        label=_("Date de naissance du titulaire"),
        help_text=_(
            "Elle est transmise à la billetterie pour vérifier la carte, et n'est pas conservée. "
            "Aucune information sur vos revenus n'est demandée ni transmise."
        ),
        input_formats=["%Y-%m-%d", "%d/%m/%Y"],
        widget=forms.DateInput(attrs={"type": "date", "autocomplete": "bday"}, format="%Y-%m-%d"),
    )

    def credentials(self) -> tuple[str, str]:
        return self.cleaned_data["card_number"], ticketing_secret(birth_date=self.cleaned_data["birth_date"])


LinkForm = LibraryLinkForm | TransportLinkForm | TicketingLinkForm

_FORMS: dict[str, type[LibraryLinkForm] | type[TransportLinkForm] | type[TicketingLinkForm]] = {
    LIBRARY_KIND: LibraryLinkForm,
    TRANSPORT_KIND: TransportLinkForm,
    TICKETING_KIND: TicketingLinkForm,
}


def link_form(kind: str, *, prefix: str, data: Any = None, user: Any = None) -> LinkForm:
    """The linking form of a connector kind; a transport form is prefilled with the account's
    family name when we have it (never a birth date: we do not hold one)."""
    cls = _FORMS.get(kind, LibraryLinkForm)
    initial: dict[str, str] = {}
    family_name = str(getattr(user, "family_name", "") or "")
    if cls is TransportLinkForm and family_name:
        initial["family_name"] = family_name
    return cls(data, prefix=prefix, initial=initial)
