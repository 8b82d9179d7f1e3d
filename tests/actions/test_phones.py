"""Phone numbers as customers type them (fault reports and complaints share the parser)."""
import pytest

from actions.phones import find_phone


@pytest.mark.parametrize("text, phone", [
    ("13812345678", "13812345678"),
    ("打我电话１３９５１２３４５６７", "13951234567"),
    ("电话１３９ １２３４ ５６７８", "13912345678"),
    ("138-1234-5678", "13812345678"),
    ("+86 138 1234 5678", "13812345678"),
    ("+8613812345678", "13812345678"),
    ("0086-13812345678", "13812345678"),
    ("座机025-88886666", "02588886666"),
    ("025 8888 6666", "02588886666"),
    ("0512-6666888", "05126666888"),
    ("户号3201234567，电话13812345678", "13812345678"),
    ("户号3201234567 13812345678", "13812345678"),
])
def test_numbers_are_found_as_digits_only(text, phone):
    assert find_phone(text) == phone


@pytest.mark.parametrize("text", [
    None, "", "没有电话", "3201234567", "1381234567", "138123456789", "12812345678",
    "8613812345678",
])
def test_no_number_is_none(text):
    assert find_phone(text) is None
