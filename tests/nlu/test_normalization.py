"""bot.components.normalization: NFKC + control characters, with an exact offset map."""
import pytest

from bot.components.normalization import normalize_text, remap_span


def test_full_width_digits_letters_and_punctuation_become_half_width():
    result = normalize_text("我户号是３２０１２３４５６７，排号Ａ０２３？")
    assert result.text == "我户号是3201234567,排号A023?"
    # every character maps 1:1 here, so spans need no remapping
    assert result.length_preserving


def test_chinese_text_is_left_intact():
    text = "江宁区东山街道上个月电费怎么这么高、还跳闸了。"
    result = normalize_text(text)
    assert result.text == text
    assert not result.changed


def test_control_and_zero_width_characters_are_removed_and_spans_move():
    text = "户号\u200b320\u00ad1234567\x07谢谢"
    result = normalize_text(text)
    assert result.text == "户号3201234567谢谢"
    start = text.index("320")
    end = text.index("\x07")
    new_start, new_end = remap_span(result, start, end)
    assert result.text[new_start:new_end] == "3201234567"


def test_whitespace_is_collapsed_and_trimmed():
    result = normalize_text("  \t转人工\n\n\u3000 快点 ")
    assert result.text == "转人工 快点"


def test_expanding_characters_keep_later_spans_valid():
    # … (1 char) becomes ... (3 chars): the 户号 after it shifts by 2
    text = "等了…户号３２０１２３４５６７"
    result = normalize_text(text)
    assert result.text == "等了...户号3201234567"
    start = text.index("３")
    new_start, new_end = remap_span(result, start, len(text))
    assert (new_start, new_end) == (start + 2, len(result.text))
    assert result.text[new_start:new_end] == "3201234567"


def test_combining_marks_compose_with_their_base():
    assert normalize_text("cafe\u0301").text == "caf\u00e9"


def test_offset_map_is_monotonic_and_complete():
    text = "\x00Ａ\u200b…㎡ 报修  "
    result = normalize_text(text)
    assert len(result.offsets) == len(text) + 1
    assert list(result.offsets) == sorted(result.offsets)
    assert result.offsets[-1] == len(result.text)
    assert all(0 <= offset <= len(result.text) for offset in result.offsets)


def test_a_span_of_removed_characters_becomes_empty():
    text = "查\u200b\u200b电费"
    result = normalize_text(text)
    assert remap_span(result, 1, 3) == (1, 1)


def test_span_outside_the_text_is_rejected():
    with pytest.raises(ValueError):
        remap_span(normalize_text("电费"), 1, 5)
