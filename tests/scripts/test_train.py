"""The model is retrained only when one of its inputs changes."""
import shutil
from pathlib import Path

from scripts import train

ROOT = Path(__file__).resolve().parents[2]


def copy_inputs(destination: Path) -> None:
    for name in train.MODEL_INPUTS:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def test_fingerprint_is_stable_and_follows_inputs(tmp_path: Path):
    copy_inputs(tmp_path)
    first = train.fingerprint(tmp_path)
    assert train.fingerprint(tmp_path) == first

    (tmp_path / "bot" / "data").mkdir(parents=True, exist_ok=True)
    (tmp_path / "bot" / "data" / "extra.yml").write_text("version: '3.1'\n", encoding="utf-8")
    second = train.fingerprint(tmp_path)
    assert second != first

    (tmp_path / "config.yml").write_text("changed\n", encoding="utf-8")
    assert train.fingerprint(tmp_path) not in (first, second)


def test_files_outside_the_inputs_do_not_count(tmp_path: Path):
    copy_inputs(tmp_path)
    before = train.fingerprint(tmp_path)
    (tmp_path / "README.md").write_text("docs change\n", encoding="utf-8")
    (tmp_path / "bot" / "components").mkdir(parents=True, exist_ok=True)
    cache = tmp_path / "bot" / "components" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "x.cpython-310.pyc").write_bytes(b"\0")
    assert train.fingerprint(tmp_path) == before
