"""The clients under the Rasa environment (aiohttp 3.9) against the real backends process."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RASA_PY = ROOT / ".venv" / "rasa" / "bin" / "python"


@pytest.mark.skipif(not RASA_PY.exists(), reason="the Rasa environment is not installed")
def test_clients_work_under_the_rasa_environment(backends_url: str):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([str(RASA_PY), str(Path(__file__).with_name("rasa_env_smoke.py")), backends_url],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["aiohttp"].startswith("3.9.")
    assert result == {**result, "account": "张建国", "bill_sum_ok": True, "verified": True,
                      "not_found": True, "unavailable": True, "ticket": "GD", "applications": 1}
    assert result["areas"] > 30 and result["halls"] == 10
