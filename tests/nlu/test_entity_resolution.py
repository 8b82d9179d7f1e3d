"""bot.components.entity_resolution: one entity per span and type, right extractor preferred."""
from bot.components.entity_resolution import resolve_entities

DIET, REGEX = "DIETClassifier", "RegexEntityExtractor"


def entity(kind, start, end, value, extractor, **extra):
    return {"entity": kind, "start": start, "end": end, "value": value, "extractor": extractor,
            **extra}


def test_same_account_number_from_diet_and_regex_comes_out_once_from_regex():
    found = [
        entity("account_number", 4, 14, "3201234567", DIET, confidence_entity=0.97),
        entity("account_number", 4, 14, "3201234567", REGEX),
    ]
    assert resolve_entities(found) == [entity("account_number", 4, 14, "3201234567", REGEX)]


def test_regex_wins_for_every_strict_type_even_with_a_shorter_span():
    found = [
        entity("phone", 0, 12, "13812345678,", DIET),
        entity("phone", 0, 11, "13812345678", REGEX),
        entity("ticket_number", 20, 24, "A023", DIET),
        entity("ticket_number", 20, 24, "A023", REGEX),
        entity("application_number", 30, 42, "YK2026110012", REGEX),
        entity("application_number", 32, 42, "2026110012", DIET),
    ]
    result = resolve_entities(found)
    assert [(e["entity"], e["extractor"], e["value"]) for e in result] == [
        ("phone", REGEX, "13812345678"),
        ("ticket_number", REGEX, "A023"),
        ("application_number", REGEX, "YK2026110012"),
    ]


def test_for_other_types_the_longer_span_wins_then_diet():
    found = [
        entity("area", 0, 4, "横溪街道", REGEX),
        entity("area", 2, 4, "街道", DIET),
        entity("area", 10, 17, "江宁区东山街道", DIET),
        entity("area", 13, 17, "东山街道", REGEX),
        entity("month", 20, 23, "上个月", DIET, processors=["EntitySynonymMapper"]),
        entity("month", 20, 23, "上个月", REGEX),
    ]
    result = resolve_entities(found)
    assert [(e["entity"], e["value"], e["extractor"]) for e in result] == [
        ("area", "横溪街道", REGEX),
        ("area", "江宁区东山街道", DIET),
        ("month", "上个月", DIET),
    ]
    assert result[2]["processors"] == ["EntitySynonymMapper"]


def test_non_overlapping_entities_of_one_type_are_all_kept_in_text_order():
    found = [
        entity("area", 6, 9, "秣陵街道", DIET),
        entity("area", 0, 3, "江宁区", REGEX),
    ]
    assert [e["value"] for e in resolve_entities(found)] == ["江宁区", "秣陵街道"]


def test_a_regex_validated_account_number_beats_diets_other_label_on_the_same_digits():
    found = [
        entity("phone", 2, 12, "3201234567", DIET),
        entity("account_number", 2, 12, "3201234567", REGEX),
    ]
    assert [e["entity"] for e in resolve_entities(found)] == ["account_number"]


def test_different_types_on_one_span_both_stay_when_no_regex_validated_them():
    found = [entity("area", 0, 4, "东山", DIET), entity("hall", 0, 4, "东山", DIET)]
    assert len(resolve_entities(found)) == 2


def test_values_are_canonicalised_for_code_and_number_types():
    found = [
        entity("ticket_number", 0, 4, "a023", REGEX),
        entity("phone", 5, 18, "138 1234-5678", REGEX),
    ]
    result = resolve_entities(found, uppercase_types=["ticket_number"], compact_types=["phone"])
    assert [e["value"] for e in result] == ["A023", "13812345678"]
    assert found[0]["value"] == "a023", "inputs are not modified"


def test_entities_without_offsets_are_deduplicated_by_type_and_value():
    found = [{"entity": "month", "value": "9月"}, {"entity": "month", "value": "9月"}]
    assert resolve_entities(found) == [{"entity": "month", "value": "9月"}]
