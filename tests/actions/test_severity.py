"""One severity ranking for repair and complaint tickets."""
from actions.severity import max_severity


def test_the_most_severe_wins():
    assert max_severity("low", "normal") == "normal"
    assert max_severity("normal", "high") == "high"
    assert max_severity("urgent", "high", "low") == "urgent"
    assert max_severity("low") == "low"


def test_unknown_and_missing_values_are_ignored():
    assert max_severity(None, "high") == "high"
    assert max_severity("bogus", "low") == "low"
    assert max_severity() == "normal"
    assert max_severity(None) == "normal"
