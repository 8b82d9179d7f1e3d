"""``tfcall`` (bot/rasa_tf_call.py) on the trained model: the held-out NLU examples parse exactly
as through TensorFlow's own call (scenario in tf_call_model_checks.py)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RASA_PY = ROOT / ".venv" / "rasa" / "bin" / "python"


@pytest.mark.e2e
def test_held_out_examples_parse_as_through_tensorflows_call(rasa_model: Path):
    done = subprocess.run(
        [str(RASA_PY), str(Path(__file__).with_name("tf_call_model_checks.py")), str(rasa_model),
         str(ROOT / "nlu_data" / "test")],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True, text=True, timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["wrapped"] is True and seen["texts"] > 100
    assert seen["different"] == []
    # every parse through the wrapper took the direct path
    assert seen["other_calls"] == 0 and seen["direct_calls"] >= seen["texts"]
