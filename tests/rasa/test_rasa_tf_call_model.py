"""``tfcall`` (bot/rasa_tf_call.py) on the trained model: the held-out NLU examples parse exactly
as through TensorFlow's own call (scenario in tf_call_model_checks.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.rasa.rasa_env import ROOT, run_checks


@pytest.mark.e2e
def test_held_out_examples_parse_as_through_tensorflows_call(rasa_model: Path):
    seen = run_checks("tf_call_model_checks.py", str(rasa_model), str(ROOT / "nlu_data" / "test"), timeout=1800)
    assert seen["wrapped"] is True and seen["texts"] > 100
    assert seen["different"] == []
    # every parse through the wrapper took the direct path
    assert seen["other_calls"] == 0 and seen["direct_calls"] >= seen["texts"]
