"""The form of Mon compte › Cartes et abonnements: link a library card (card number + PIN)."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from connectors.library import MAX_CARD_LENGTH, MAX_PIN_LENGTH


class LibraryLinkForm(forms.Form):
    card_number = forms.CharField(
        label=_("Numéro de carte"),
        max_length=MAX_CARD_LENGTH + 8,  # spaces typed between groups of digits are removed
        help_text=_("Le numéro inscrit sous le code-barres de votre carte de bibliothèque."),
        widget=forms.TextInput(
            attrs={
                "inputmode": "numeric",
                "autocomplete": "off",
                "autocapitalize": "none",
                "spellcheck": "false",
            }
        ),
    )
    pin = forms.CharField(
        label=_("Code PIN de la carte"),
        max_length=MAX_PIN_LENGTH,
        strip=False,
        help_text=_("Celui que vous utilisez aux automates de prêt. Il n'est pas conservé."),
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "inputmode": "numeric"}),
    )
