"""Check digits of vehicle and personal identifiers (ISO 3779 VIN, GB 11643 resident ID)."""

from __future__ import annotations

import re

# ISO 3779 / GB 16735: letters I, O and Q never appear; position 9 is the check digit.
_VIN_VALUES = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
VIN_PATTERN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}\Z")


def vin_check_digit(vin: str) -> str:
    """Return the check character ('0'-'9' or 'X') that position 9 of `vin` must hold."""
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin.upper(), _VIN_WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def is_valid_vin(vin: str) -> bool:
    """True for a 17-character VIN with allowed letters and a correct check digit."""
    if not isinstance(vin, str) or not VIN_PATTERN.match(vin):
        return False
    return vin[8] == vin_check_digit(vin)


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
RESIDENT_ID_PATTERN = re.compile(r"^\d{17}[\dX]\Z")


def resident_id_check_char(first17: str) -> str:
    """GB 11643-1999 check character for the first 17 digits of a resident ID."""
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def is_valid_resident_id(value: str) -> bool:
    """True for an 18-character resident ID whose check character matches."""
    if not isinstance(value, str) or not RESIDENT_ID_PATTERN.match(value):
        return False
    return value[17] == resident_id_check_char(value[:17])
