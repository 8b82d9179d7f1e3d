"""Entity values of the latest message, as every action reads them."""
from types import SimpleNamespace

from actions.entities import entity_values, first_entity_value


def tracker(*entities: tuple[str, object]):
    return SimpleNamespace(latest_message={
        "entities": [{"entity": name, "value": value} for name, value in entities],
    })


def test_values_are_normalised_unique_and_in_order():
    found = tracker(("area", "江宁区"), ("hall", "东山"), ("area", " 东山街道 "), ("area", "江宁区"))
    assert entity_values(found, "area") == ["江宁区", "东山街道"]
    assert first_entity_value(found, "area") == "江宁区"


def test_empty_values_and_other_entities_do_not_count():
    found = tracker(("phone", ""), ("phone", None), ("ticket_number", "Ａ０２３"))
    assert entity_values(found, "phone") == []
    assert first_entity_value(found, "phone") is None
    assert entity_values(found, "ticket_number") == ["A023"]
    assert entity_values(SimpleNamespace(latest_message={}), "area") == []
