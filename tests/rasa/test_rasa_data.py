"""The training data is consistent and the trained model passes every test story."""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RASA = ROOT / ".venv" / "rasa" / "bin" / "rasa"
STORIES = ROOT / "tests" / "stories"


def rasa(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(RASA), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def test_rasa_data_validate_is_clean():
    result = rasa(
        "data", "validate", "--domain", "bot/domain", "--config", "config.yml",
        "--data", "nlu_data/train", "nlu_data/synonyms.yml", "nlu_data/regex.yml",
        "nlu_data/lookups", "bot/data", "--fail-on-warnings",
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.mark.e2e
def test_every_test_story_passes(rasa_model: Path, tmp_path: Path):
    assert sorted(STORIES.glob("*.yml")), "no test stories in tests/stories"
    result = rasa(
        "test", "core", "--model", str(rasa_model), "--stories", str(STORIES),
        "--out", str(tmp_path),
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # Rasa lists every story that went wrong here (all of them, unlike --fail-on-prediction-errors).
    report = (tmp_path / "failed_test_stories.yml").read_text(encoding="utf-8")
    assert "None of the test stories failed" in report, report
