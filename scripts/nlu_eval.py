"""Evaluate the NLU on the held-back split: ``python -m scripts.nlu_eval [--model M]``.

Two measurements, both printed as one short table and written to ``<out>/nlu_summary.json``:

1. ``rasa test nlu --nlu nlu_data/test --model <model> --out <out>``: Rasa's own reports
   (``intent_report.json`` → intent accuracy; ``<Extractor>_report.json`` → per-extractor entity
   F1, micro and weighted average).
2. The pipeline's final entities: Rasa scores each extractor on its own, but the bot's slots
   receive what comes out of the whole pipeline, after ``EntityDeduplicator`` dropped the
   duplicate of every 户号 that DIET and the regex extractor both found (so DIET's own report
   under-counts it). This step parses every test example with the model (in the Rasa env) and
   scores the final entities against the annotations: a hit is the same entity type on the same
   span; precision, recall and F1 are micro-averaged over all entities, and for the hits the
   share with the annotated value (synonyms applied) is reported too.

Runs from the app env (it calls the Rasa env for the Rasa parts). Without ``--model`` it uses
the model of the current inputs (``scripts.train``, which trains only if the inputs changed).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
RASA_BIN = ROOT / ".venv" / "rasa" / "bin" / "rasa"
RASA_PY = ROOT / ".venv" / "rasa" / "bin" / "python"
DEFAULT_TEST_DATA = ROOT / "nlu_data" / "test"
DEFAULT_OUT = ROOT / "results" / "nlu"
# The entities SPEC's core domain shares between capabilities (regexes, lookups, synonyms, the
# deduplicator serve these); capability-specific entities are scored in the overall figure only.
SHARED_ENTITIES = ("account_number", "phone", "area", "hall", "ticket_number",
                   "application_number", "month", "business_type")
SUMMARY_FILE = "nlu_summary.json"


def _rasa_env() -> Dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def run_rasa_test(model: Path, test_data: Path, out: Path, timeout: int = 1800) -> None:
    """Runs ``rasa test nlu`` into ``out`` (raises ``RuntimeError`` with Rasa's output on failure)."""
    out.mkdir(parents=True, exist_ok=True)
    command = [
        str(RASA_BIN), "test", "nlu", "--nlu", str(test_data), "--model", str(model),
        "--out", str(out), "--no-plot",
    ]
    result = subprocess.run(
        command, cwd=ROOT, env=_rasa_env(), capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"rasa test nlu failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
            f"{result.stderr[-3000:]}"
        )


def read_rasa_reports(out: Path) -> Dict[str, Any]:
    """Intent accuracy and per-extractor entity F1 from the reports ``rasa test nlu`` wrote."""
    intent = json.loads((out / "intent_report.json").read_text(encoding="utf-8"))
    # sklearn writes "accuracy" when every label occurs, "micro avg" otherwise.
    if "accuracy" in intent:
        accuracy = float(intent["accuracy"])
    else:
        accuracy = float(intent["micro avg"]["f1-score"])
    extractors: Dict[str, Dict[str, float]] = {}
    for report_file in sorted(out.glob("*_report.json")):
        name = report_file.name.removesuffix("_report.json")
        if name in ("intent", "response_selection"):
            continue
        report = json.loads(report_file.read_text(encoding="utf-8"))
        micro = report.get("micro avg") or {}
        weighted = report.get("weighted avg") or {}
        extractors[name] = {
            "micro_f1": float(micro.get("f1-score", report.get("accuracy", 0.0))),
            "weighted_f1": float(weighted.get("f1-score", 0.0)),
        }
    return {
        "intent_accuracy": accuracy,
        "intent_weighted_f1": float(intent.get("weighted avg", {}).get("f1-score", 0.0)),
        "extractors": extractors,
    }


def score_entities(examples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Micro precision/recall/F1 of predicted vs. annotated entities (type + span).

    ``examples`` items have ``gold`` and ``predicted`` lists of ``{entity, start, end, value}``
    on the same (normalised) text.
    """
    true_positives = value_hits = predicted_total = gold_total = 0
    per_type: Dict[str, Dict[str, int]] = {}
    for example in examples:
        gold = {(e["entity"], e["start"], e["end"]): e.get("value") for e in example["gold"]}
        predicted = {
            (e["entity"], e["start"], e["end"]): e.get("value") for e in example["predicted"]
        }
        gold_total += len(gold)
        predicted_total += len(predicted)
        for key in gold:
            counts = per_type.setdefault(key[0], {"tp": 0, "gold": 0, "predicted": 0})
            counts["gold"] += 1
        for key in predicted:
            counts = per_type.setdefault(key[0], {"tp": 0, "gold": 0, "predicted": 0})
            counts["predicted"] += 1
        for key in gold.keys() & predicted.keys():
            true_positives += 1
            per_type[key[0]]["tp"] += 1
            if str(gold[key]) == str(predicted[key]):
                value_hits += 1

    def prf(tp: int, n_predicted: int, n_gold: int) -> Dict[str, float]:
        precision = tp / n_predicted if n_predicted else (1.0 if not n_gold else 0.0)
        recall = tp / n_gold if n_gold else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1}

    return {
        **prf(true_positives, predicted_total, gold_total),
        "support": gold_total,
        "value_accuracy": value_hits / true_positives if true_positives else 0.0,
        "per_type": {
            name: {**prf(c["tp"], c["predicted"], c["gold"]), "support": c["gold"]}
            for name, c in sorted(per_type.items())
        },
    }


def _parse_examples_in_rasa_env(model: Path, test_data: Path) -> List[Dict[str, Any]]:
    """(Rasa env) Parses every annotated test example with the model; gold moved to normalised text."""
    import asyncio
    import logging

    from rasa.core.agent import Agent
    from rasa.shared.nlu.training_data.loading import load_data

    from bot.components.normalization import normalize_text, remap_span

    logging.disable(logging.WARNING)
    data = load_data(str(test_data))
    agent = Agent.load(str(model))

    async def parse_all() -> List[Dict[str, Any]]:
        results = []
        for example in data.nlu_examples:
            text = example.get("text")
            parsed = await agent.parse_message(text)
            normalized = normalize_text(text)
            gold = []
            for entity in example.get("entities") or []:
                start, end = remap_span(normalized, entity["start"], entity["end"])
                value = entity.get("value")
                if value == text[entity["start"]:entity["end"]]:
                    value = normalized.text[start:end]
                gold.append({"entity": entity["entity"], "start": start, "end": end,
                             "value": value})
            predicted = [
                {"entity": e["entity"], "start": e.get("start"), "end": e.get("end"),
                 "value": e.get("value"), "extractor": e.get("extractor")}
                for e in parsed.get("entities", [])
            ]
            results.append({"text": text, "intent": example.get("intent"),
                            "predicted_intent": (parsed.get("intent") or {}).get("name"),
                            "gold": gold, "predicted": predicted})
        return results

    return asyncio.run(parse_all())


def pipeline_entities(model: Path, test_data: Path, out: Path, timeout: int = 900) -> Dict[str, Any]:
    """Scores the pipeline's final entities on ``test_data`` (runs the parse in the Rasa env)."""
    parsed_file = out / "pipeline_entities.json"
    command = [str(RASA_PY), "-m", "scripts.nlu_eval", "--parse-only", "--model", str(model),
               "--nlu", str(test_data), "--parsed-out", str(parsed_file)]
    result = subprocess.run(
        command, cwd=ROOT, env=_rasa_env(), capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"parsing the test data failed:\n{result.stderr[-3000:]}")
    examples = json.loads(parsed_file.read_text(encoding="utf-8"))
    scores = score_entities([e for e in examples if e["gold"] or e["predicted"]])
    shared = [
        {"gold": [g for g in e["gold"] if g["entity"] in SHARED_ENTITIES],
         "predicted": [p for p in e["predicted"] if p["entity"] in SHARED_ENTITIES]}
        for e in examples
    ]
    scores["shared"] = score_entities([e for e in shared if e["gold"] or e["predicted"]])
    scores["shared"].pop("per_type")
    errors = [
        {"text": e["text"], "gold": e["gold"], "predicted": e["predicted"]}
        for e in examples
        if {(g["entity"], g["start"], g["end"]) for g in e["gold"]}
        != {(p["entity"], p["start"], p["end"]) for p in e["predicted"]}
    ]
    (out / "pipeline_entity_errors.json").write_text(
        json.dumps(errors, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    return scores


def format_table(summary: Dict[str, Any]) -> str:
    """The summary as a short fixed-width table."""
    rows = [("intent accuracy (rasa intent_report)", summary["intent_accuracy"])]
    for name, scores in summary["extractors"].items():
        rows.append((f"entity F1 micro    {name}", scores["micro_f1"]))
        rows.append((f"entity F1 weighted {name}", scores["weighted_f1"]))
    pipeline = summary["pipeline_entities"]
    rows.append(("pipeline entity F1 (type+span, micro)", pipeline["f1"]))
    rows.append(("pipeline entity precision", pipeline["precision"]))
    rows.append(("pipeline entity recall", pipeline["recall"]))
    rows.append(("pipeline entity value accuracy (hits)", pipeline["value_accuracy"]))
    if "shared" in pipeline:
        rows.append(("pipeline F1, shared core entities only", pipeline["shared"]["f1"]))
    width = max(len(label) for label, _ in rows)
    lines = [f"NLU held-back evaluation: {summary['model']}",
             f"{'metric'.ljust(width)}  value", f"{'-' * width}  -----"]
    lines += [f"{label.ljust(width)}  {value:.3f}" for label, value in rows]
    lines.append(f"(pipeline entities: {pipeline['support']} annotated; per type in "
                 f"{SUMMARY_FILE})")
    return "\n".join(lines)


def evaluate(model: Path, test_data: Path = DEFAULT_TEST_DATA, out: Path = DEFAULT_OUT) -> Dict[str, Any]:
    """Runs both measurements and writes ``<out>/nlu_summary.json``; returns the summary."""
    run_rasa_test(model, test_data, out)
    summary: Dict[str, Any] = {"model": model.name, "test_data": str(test_data)}
    summary.update(read_rasa_reports(out))
    summary["pipeline_entities"] = pipeline_entities(model, test_data, out)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model .tar.gz (default: current inputs' model)")
    parser.add_argument("--nlu", type=Path, default=DEFAULT_TEST_DATA, help="held-back test data")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument("--parse-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--parsed-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.parse_only:  # internal: runs inside the Rasa env
        examples = _parse_examples_in_rasa_env(args.model, args.nlu)
        args.parsed_out.write_text(json.dumps(examples, ensure_ascii=False), encoding="utf-8")
        return
    model = args.model
    if model is None:
        from scripts.train import train

        model = train()
    try:
        summary = evaluate(model.resolve(), args.nlu.resolve(), args.out.resolve())
    except RuntimeError as exc:
        sys.exit(str(exc))
    print(format_table(summary))


if __name__ == "__main__":
    main()
