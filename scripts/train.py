"""Train the Rasa model only when its inputs changed: ``python -m scripts.train``.

The model's name carries a fingerprint of every input (pipeline, domain, stories, NLU training
data, lookup tables, jieba dictionary, custom components, Rasa version), so an unchanged input set
finds its model in ``models/`` and skips training. Prints the model's path on the last line.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RASA_BIN = ROOT / ".venv" / "rasa" / "bin" / "rasa"
MODELS_DIR = ROOT / "models"

# Everything that changes what `rasa train` produces.
MODEL_INPUTS = (
    "config.yml",
    "bot/domain",
    "bot/data",
    "bot/components",
    "nlu_data/train",
    "nlu_data/synonyms.yml",
    "nlu_data/regex.yml",
    "nlu_data/lookups",
    "nlu_data/jieba_dict",
    "requirements/rasa.lock",
)
TRAINING_DATA = ("nlu_data/train", "nlu_data/synonyms.yml", "nlu_data/regex.yml",
                 "nlu_data/lookups", "bot/data")


def input_files(root: Path = ROOT) -> list[Path]:
    """The files that make up the model's inputs, in a stable order."""
    files: list[Path] = []
    for name in MODEL_INPUTS:
        path = root / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(
                p for p in sorted(path.rglob("*"))
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
            )
    return files


def fingerprint(root: Path = ROOT) -> str:
    """A short hash over the inputs' paths and contents."""
    digest = hashlib.sha256()
    for path in input_files(root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def model_path(root: Path = ROOT) -> Path:
    return MODELS_DIR / f"powerdesk-{fingerprint(root)}.tar.gz"


def train(force: bool = False) -> Path:
    """Return the model for the current inputs, training it first if it does not exist."""
    target = model_path()
    if target.exists() and not force:
        print(f"model is up to date: {target.relative_to(ROOT)}", file=sys.stderr)
        return target
    MODELS_DIR.mkdir(exist_ok=True)
    data = [str(ROOT / p) for p in TRAINING_DATA if (ROOT / p).exists()]
    command = [
        str(RASA_BIN), "train",
        "--config", str(ROOT / "config.yml"),
        "--domain", str(ROOT / "bot" / "domain"),
        "--data", *data,
        "--out", str(MODELS_DIR),
        "--fixed-model-name", target.name.removesuffix(".tar.gz"),
    ]
    print(f"training {target.name} (inputs changed) ...", file=sys.stderr)
    started = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    seconds = time.monotonic() - started
    (MODELS_DIR / f"{target.name}.train.json").write_text(
        json.dumps({"model": target.name, "train_seconds": round(seconds, 1)})
    )
    for old in MODELS_DIR.glob("powerdesk-*.tar.gz"):
        if old != target:
            old.unlink()
            old.with_name(old.name + ".train.json").unlink(missing_ok=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="train even if the model exists")
    args = parser.parse_args()
    try:
        print(train(force=args.force))
    except subprocess.CalledProcessError as exc:
        sys.exit(f"rasa train failed with exit code {exc.returncode}")


if __name__ == "__main__":
    main()
