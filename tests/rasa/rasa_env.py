"""Running a scenario script of this folder under the Rasa environment (``.venv/rasa``), whose
packages the app environment running pytest does not have."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RASA_PY = ROOT / ".venv" / "rasa" / "bin" / "python"

needs_rasa_env = pytest.mark.skipif(not RASA_PY.exists(), reason="the Rasa environment is not installed")


def run_checks(script: str, *args: str, timeout: float = 600) -> dict:
    """Run ``script`` (a file next to this one) with ``args`` under the Rasa environment; returns
    the JSON object it prints last. Fails the test with its stderr when it exits non-zero."""
    done = subprocess.run(
        [str(RASA_PY), str(Path(__file__).with_name(script)), *args],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True, text=True, timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
