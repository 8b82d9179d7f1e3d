"""Text normalisation shared by the actions."""
from actions.text import normalize


def test_full_width_becomes_ascii_and_is_trimmed():
    assert normalize("　Ａ０２３　") == "A023"
    assert normalize("１３９ １２３４") == "139 1234"


def test_none_and_empty_are_the_empty_string():
    assert normalize(None) == ""
    assert normalize("   ") == ""
