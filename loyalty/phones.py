"""Phone numbers as member identities: E.164, default region Vietnam."""

import re

import phonenumbers

from loyalty import conf
from loyalty.exceptions import InvalidPhone

_ALLOWED = re.compile(r"^\+?[0-9 .()\-]{6,25}$")


def normalize_phone(raw: str | None) -> str:
    """'0901234567', '+84 90 123 4567' and '84901234567' all become '+84901234567'. Raises InvalidPhone."""
    text = (raw or "").strip()
    if not _ALLOWED.match(text):
        raise InvalidPhone(details={"phone": raw})
    try:
        number = phonenumbers.parse(text, conf.default_region())
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(details={"phone": raw}) from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(details={"phone": raw})
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
