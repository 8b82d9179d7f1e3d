"""Run a snippet in the Rasa environment (custom components import rasa; the tests run in the
app env) and get back what it printed as JSON on its last line."""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RASA_PY = ROOT / ".venv" / "rasa" / "bin" / "python"


def run_in_rasa_env(code: str, timeout: int = 300) -> Any:
    """Executes ``code`` with the Rasa env's Python (cwd and PYTHONPATH = repo root).

    The snippet must ``print(json.dumps(result))`` last; that value is returned.
    """
    result = subprocess.run(
        [str(RASA_PY), "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
