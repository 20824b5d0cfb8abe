"""Check digits of VINs and resident IDs, with property tests."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from fleetgate.formats import is_valid_resident_id, is_valid_vin, resident_id_check_char, vin_check_digit
from fleetgate.sample import identities

VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def test_known_vin_check_digit() -> None:
    # The textbook example of the North American / ISO 3779 check digit.
    assert vin_check_digit("1M8GDM9AXKP042788") == "X"
    assert is_valid_vin("1M8GDM9AXKP042788")
    assert not is_valid_vin("1M8GDM9A1KP042788")


def test_known_resident_id_check_char() -> None:
    # GB 11643-1999 worked example.
    assert resident_id_check_char("11010519491231002") == "X"
    assert is_valid_resident_id("11010519491231002X")
    assert not is_valid_resident_id("110105194912310021")


@given(st.text(alphabet=VIN_CHARS, min_size=17, max_size=17))
def test_vin_with_its_check_digit_is_valid_and_any_other_digit_is_not(draft: str) -> None:
    vin = draft[:8] + vin_check_digit(draft) + draft[9:]
    assert is_valid_vin(vin)
    for other in "0123456789X":
        if other != vin[8]:
            assert not is_valid_vin(vin[:8] + other + vin[9:])


@given(st.text(min_size=0, max_size=20))
def test_vin_rejects_arbitrary_text_without_raising(text: str) -> None:
    result = is_valid_vin(text)
    assert result is False or (len(text) == 17 and text[8] == vin_check_digit(text))


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_generated_identifiers_validate(seed: int) -> None:
    rng = np.random.default_rng(seed)
    assert is_valid_vin(identities.vin(rng))
    assert is_valid_resident_id(identities.resident_id(rng))
    phone = identities.mobile(rng)
    assert len(phone) == 11 and phone.startswith("1") and phone.isdigit()
    assert len(identities.plate(rng, "green")) == 8
    assert len(identities.plate(rng, "blue")) == 7
