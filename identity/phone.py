"""Phone numbers as residents type them, stored as E.164 (the `phone_number` claim's format,
OpenID Connect Core 1.0 §5.1).

Parsed with the `phonenumbers` library (Google's libphonenumber metadata). A number without
a country prefix is read as French ("06 12 34 56 78"); "+33 6 …" and "0033 6 …" are the same
number; other countries need their prefix ("+32 …"). A number is accepted only if it can
exist in its country's numbering plan: whether it is the resident's is not checked
(`phone_number_verified` stays false).
"""

from __future__ import annotations

import phonenumbers

DEFAULT_REGION = "FR"
MAX_INPUT_LENGTH = 40


def phone_to_e164(value: str) -> str | None:
    """The E.164 form of a typed number ("+33612345678"), or None if it is not a valid number."""
    text = (value or "").strip()
    if not text or len(text) > MAX_INPUT_LENGTH:
        return None
    try:
        number = phonenumbers.parse(text, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_for_display(e164: str) -> str:
    """A stored number as a resident reads it: national format for France, international otherwise."""
    if not e164:
        return ""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    if number.country_code == 33:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
