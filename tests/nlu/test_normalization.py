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


def span_text(result, original_text, fragment):
    """The normalised text of the original span holding ``fragment``."""
    start = original_text.index(fragment)
    new_start, new_end = remap_span(result, start, start + len(fragment))
    return result.text[new_start:new_end]


@pytest.mark.parametrize("text, expected", [
    ("户号3201 234 567", "户号3201234567"),
    ("户号3201-234-567查电费", "户号3201234567查电费"),
    ("户号 32012 34567 ", "户号 3201234567"),
    ("电话138 1234 5678", "电话13812345678"),
    ("1381-234-5678", "13812345678"),
    ("+86 138 1234 5678", "+86 13812345678"),
])
def test_account_and_phone_numbers_typed_in_groups_are_joined(text, expected):
    assert normalize_text(text).text == expected


@pytest.mark.parametrize("text", [
    "2026-11-28停电",      # a date: 8 digits
    "2026-09的电费",        # a month
    "3201 0012 3456",      # 12 digits: no 户号 of this length
    "A023 123",            # a queue ticket and something else
    "YK2026 110012",       # application number prefix: not a bare digit group
    "3201234567 13812345678",  # two numbers, each already whole
])
def test_other_digit_groups_are_left_alone(text):
    assert normalize_text(text).text == text


def test_converted_numerals_do_not_run_into_digits_already_there():
    text = "帮我查3205678901二零二六年九月"
    result = normalize_text(text)
    assert result.text == "帮我查3205678901 2026年9月"
    assert span_text(result, text, "3205678901") == "3205678901"
    assert span_text(result, text, "二零二六年九月") == "2026年9月"


def test_joined_account_number_keeps_its_entity_span():
    text = "我的户号是3201-234-567，十一月的电费"
    result = normalize_text(text)
    assert result.text == "我的户号是3201234567,11月的电费"
    assert span_text(result, text, "3201-234-567") == "3201234567"
    assert span_text(result, text, "十一月") == "11月"
    assert span_text(result, text, "电费") == "电费"


@pytest.mark.parametrize("text, expected", [
    ("十一月的电费", "11月的电费"),
    ("查下十二月份账单", "查下12月份账单"),
    ("一月电费", "1月电费"),
    ("二零二六年九月", "2026年9月"),
    ("二〇二五年十二月", "2025年12月"),
    ("十一月三日停电吗", "11月3日停电吗"),
    ("九月二十号交的", "9月20号交的"),
    ("交了一百块", "交了100块"),
    ("一百多块钱", "100多块钱"),
    ("交了两百元", "交了200元"),
    ("一千二百五十元", "1250元"),
    ("一百点五元", "100.5元"),
    ("五块钱", "5块钱"),
    ("这个月用了三百度电", "这个月用了300度电"),
])
def test_chinese_numerals_of_months_dates_and_amounts_become_digits(text, expected):
    assert normalize_text(text).text == expected


@pytest.mark.parametrize("text", [
    "查一下电费", "一个月了还没修好", "上一月", "下一月", "每个月", "第一月", "几百块",
    "我们一块去营业厅", "一度停电", "三元区停电", "五角场营业厅", "十块",  # one numeral alone
    "二十四小时", "前两个月",
])
def test_other_chinese_numerals_are_left_alone(text):
    assert normalize_text(text).text == text


@pytest.mark.parametrize("text, expected", [
    ("店费多少", "电费多少"),
    ("电废怎么这么贵", "电费怎么这么贵"),
    ("又停店了", "又停电了"),
    ("怎么交废", "怎么交费"),
    ("缴废方式", "缴费方式"),
    ("家里跳匝了", "家里跳闸了"),
    ("我要投述", "我要投诉"),
    ("东山营业听在哪", "东山营业厅在哪"),
    ("转人公", "转人工"),
])
def test_homophone_typos_of_domain_words_are_fixed(text, expected):
    result = normalize_text(text)
    assert result.text == expected
    assert result.length_preserving  # the table only swaps characters: spans stay put


def test_homophone_table_swaps_same_length_words_only():
    from bot.components.normalization import HOMOPHONES

    assert all(len(wrong) == len(right) and wrong != right for wrong, right in HOMOPHONES.items())


@pytest.mark.parametrize("text", [
    "<div></div>", "<script>", "<SCRIPT>alert('电费')</script>", "!!!", "###", "？？？", "。。。",
    "...", "😀😀", "<br/>", "<!-- x -->", " <p> </p> ", "-_-",
])
def test_markup_or_symbols_only_become_empty(text):
    result = normalize_text(text)
    assert result.text == ""
    assert result.offsets == (0,) * (len(text) + 1)


@pytest.mark.parametrize("text, expected", [
    ("<b>查电费</b>", "查电费"),
    ("<p>户号３２０１２３４５６７</p>", "户号3201234567"),
    ('<a href="x">停电</a>了吗', "停电了吗"),
    ("hello<br>world", "hello world"),
    ("电费<100吗", "电费<100吗"),  # a comparison, not a tag
    ("1", "1"),
    ("A023?", "A023?"),
])
def test_markup_is_stripped_and_text_with_words_is_kept(text, expected):
    assert normalize_text(text).text == expected


def test_entity_after_stripped_markup_and_expanded_characters_keeps_its_span():
    text = "<p>等了…</p> 户号 3201 234 567 "
    result = normalize_text(text)
    assert result.text == "等了... 户号 3201234567"
    assert span_text(result, text, "3201 234 567") == "3201234567"
    assert list(result.offsets) == sorted(result.offsets)
    assert result.offsets[-1] == len(result.text)


@pytest.mark.parametrize("text, expected", [
    ("查查32165432101月的账", "查查3216543210 1月的账"),
    ("320777712310月用电量", "3207777123 10月用电量"),
    ("３２０４４５６７８９8月份账单", "3204456789 8月份账单"),
    ("3209876543十一月", "3209876543 11月"),
])
def test_an_account_number_glued_to_a_month_is_set_apart(text, expected):
    assert normalize_text(text).text == expected


@pytest.mark.parametrize("text", ["13812345678", "3201234567 9月", "32012345678", "138123456781月"])
def test_other_digit_runs_before_a_month_are_left_alone(text):
    assert normalize_text(text).text == text


def test_the_account_number_before_a_glued_month_keeps_its_span():
    normalized = normalize_text("户号32165432101月")
    assert remap_span(normalized, 2, 12) == (2, 12)
    assert normalized.text[2:12] == "3216543210"
    assert remap_span(normalized, 12, 14) == (13, 15)
