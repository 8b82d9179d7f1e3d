"""Evaluate the NLU on the held-back split: ``python -m scripts.nlu_eval [--model M]``.

Two measurements, printed as short tables and written to ``<out>/nlu_summary.json``:

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

From the same parse: what the bot answers per intent (precision and recall, ``nlu_fallback``
counting as a miss), per-entity recall, the confusion pairs that lose the most examples, and the
fallback curve: for each FallbackClassifier threshold, how many in-scope test examples would fall
to ``nlu_fallback``, how many would be answered with a wrong in-scope intent, and how many
``out_of_scope`` ones would be answered as if in scope. It uses each example's raw intent ranking
(the ranking keeps the real intents below ``nlu_fallback``) and the ``ambiguity_threshold`` of
config.yml, so one run shows every threshold. ``--curve-only`` prints the curve alone.

Runs from the app env (it calls the Rasa env for the Rasa parts). Without ``--model`` it uses
the model of the current inputs (``scripts.train``, which trains only if the inputs changed).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

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
CONFIG_FILE = ROOT / "config.yml"
FALLBACK_INTENT = "nlu_fallback"
OUT_OF_SCOPE = "out_of_scope"
CURVE_THRESHOLDS = tuple(round(0.05 * step, 2) for step in range(2, 20))
AMBIGUITY_THRESHOLDS = (0.0, 0.02, 0.05, 0.08, 0.1, 0.15, 0.2)
TOP_CONFUSIONS = 12


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
            ranking = [[r.get("name"), float(r.get("confidence") or 0.0)]
                       for r in parsed.get("intent_ranking") or []]
            results.append({"text": text, "intent": example.get("intent"),
                            "predicted_intent": (parsed.get("intent") or {}).get("name"),
                            "ranking": ranking, "gold": gold, "predicted": predicted})
        return results

    return asyncio.run(parse_all())


def intent_scores(examples: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Accuracy and per-intent precision/recall/F1 of the pipeline's final intent.

    A prediction of ``nlu_fallback`` is a miss of the annotated intent and is nobody's false
    positive (it is listed separately as ``fallback``).
    """
    per_intent: Dict[str, Dict[str, int]] = {}
    fallbacks = correct = 0
    for example in examples:
        gold, predicted = example["intent"], example["predicted_intent"]
        per_intent.setdefault(gold, {"tp": 0, "gold": 0, "predicted": 0})["gold"] += 1
        if predicted == FALLBACK_INTENT:
            fallbacks += 1
            continue
        per_intent.setdefault(predicted, {"tp": 0, "gold": 0, "predicted": 0})["predicted"] += 1
        if predicted == gold:
            correct += 1
            per_intent[gold]["tp"] += 1
    table = {}
    for name, c in sorted(per_intent.items()):
        precision = c["tp"] / c["predicted"] if c["predicted"] else (1.0 if not c["gold"] else 0.0)
        recall = c["tp"] / c["gold"] if c["gold"] else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        table[name] = {"precision": precision, "recall": recall, "f1": f1, "support": c["gold"]}
    total = len(examples)
    return {"accuracy": correct / total if total else 0.0, "fallback": fallbacks,
            "support": total, "per_intent": table}


def confusion_pairs(examples: Sequence[Dict[str, Any]], top: int = TOP_CONFUSIONS
                    ) -> List[Tuple[str, str, int]]:
    """(annotated, predicted, count) of the misclassifications, most frequent first."""
    counts = Counter(
        (e["intent"], e["predicted_intent"]) for e in examples if e["intent"] != e["predicted_intent"]
    )
    return [(gold, predicted, n) for (gold, predicted), n in
            sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]]


def _raw_ranking(example: Dict[str, Any]) -> List[Tuple[str, float]]:
    return [(name, conf) for name, conf in example.get("ranking") or [] if name != FALLBACK_INTENT]


def fallback_curve(examples: Sequence[Dict[str, Any]], thresholds: Sequence[float] = CURVE_THRESHOLDS,
                   ambiguity_threshold: float = 0.0) -> List[Dict[str, Any]]:
    """What FallbackClassifier(threshold, ambiguity_threshold) would do to each test example.

    Per threshold: in-scope examples (annotated anything but ``out_of_scope``) that fall to
    fallback, in-scope examples answered with a wrong intent, and ``out_of_scope`` examples
    answered as if in scope (an in-scope intent at or above the threshold, not ambiguous). An
    empty ranking (a message the normaliser emptied) falls to fallback at every threshold.
    """
    rows = []
    in_scope = [e for e in examples if e["intent"] != OUT_OF_SCOPE]
    out_of_scope = [e for e in examples if e["intent"] == OUT_OF_SCOPE]
    for threshold in thresholds:
        fallback = wrong = oos_answered = 0
        for example in examples:
            ranking = _raw_ranking(example)
            top, confidence = ranking[0] if ranking else (None, 0.0)
            second = ranking[1][1] if len(ranking) > 1 else 0.0
            falls = confidence < threshold or confidence - second < ambiguity_threshold
            if example["intent"] == OUT_OF_SCOPE:
                oos_answered += not falls and top != OUT_OF_SCOPE
            elif falls:
                fallback += 1
            elif top != example["intent"]:
                wrong += 1
        rows.append({
            "threshold": threshold,
            "in_scope_fallback": fallback,
            "in_scope_fallback_rate": fallback / len(in_scope) if in_scope else 0.0,
            "in_scope_wrong": wrong,
            "out_of_scope_answered": oos_answered,
            "out_of_scope_answered_rate": oos_answered / len(out_of_scope) if out_of_scope else 0.0,
            "in_scope": len(in_scope),
            "out_of_scope": len(out_of_scope),
        })
    return rows


def ambiguity_curve(examples: Sequence[Dict[str, Any]], threshold: float,
                    ambiguities: Sequence[float] = AMBIGUITY_THRESHOLDS) -> List[Dict[str, Any]]:
    """The same three counts at one ``threshold`` for each FallbackClassifier ``ambiguity_threshold``
    (a message falls back when its two best intents are closer than that)."""
    rows = []
    for ambiguity in ambiguities:
        row = fallback_curve(examples, [threshold], ambiguity)[0]
        rows.append({**row, "ambiguity_threshold": ambiguity})
    return rows


def best_threshold(curve: Sequence[Dict[str, Any]]) -> float:
    """The threshold with the fewest customers answered wrongly or not at all.

    Cost = in-scope fallbacks + in-scope wrong answers + out-of-scope answered in scope; on a tie
    the lowest threshold (fewer fallbacks for clear requests).
    """
    return min(curve, key=lambda r: (r["in_scope_fallback"] + r["in_scope_wrong"]
                                     + r["out_of_scope_answered"], r["threshold"]))["threshold"]


def configured_fallback(config_file: Path = CONFIG_FILE) -> Dict[str, float]:
    """The FallbackClassifier's threshold and ambiguity_threshold in config.yml (Rasa's defaults)."""
    config = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    for component in config.get("pipeline") or []:
        if component.get("name") == "FallbackClassifier":
            return {"threshold": float(component.get("threshold", 0.3)),
                    "ambiguity_threshold": float(component.get("ambiguity_threshold", 0.1))}
    return {"threshold": 0.0, "ambiguity_threshold": 0.0}


def parse_test_data(model: Path, test_data: Path, out: Path, timeout: int = 900) -> List[Dict[str, Any]]:
    """Parses every test example with the model in the Rasa env (``<out>/pipeline_entities.json``)."""
    out.mkdir(parents=True, exist_ok=True)
    parsed_file = out / "pipeline_entities.json"
    command = [str(RASA_PY), "-m", "scripts.nlu_eval", "--parse-only", "--model", str(model),
               "--nlu", str(test_data), "--parsed-out", str(parsed_file)]
    result = subprocess.run(
        command, cwd=ROOT, env=_rasa_env(), capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"parsing the test data failed:\n{result.stderr[-3000:]}")
    return json.loads(parsed_file.read_text(encoding="utf-8"))


def pipeline_entities(examples: List[Dict[str, Any]], out: Path) -> Dict[str, Any]:
    """Scores the pipeline's final entities of the parsed test examples."""
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


_CURVE_HEADER = ("  in-scope->fallback  in-scope wrong  out_of_scope answered",
                 "  ------------------  --------------  ---------------------")


def _curve_line(value: float, row: Dict[str, Any], marks: Sequence[str]) -> str:
    """One row of a fallback or ambiguity curve: the varied setting, then the three counts."""
    return (f"{value:9.2f}  {row['in_scope_fallback']:4d} ({row['in_scope_fallback_rate']:5.1%})"
            f"       {row['in_scope_wrong']:4d}            {row['out_of_scope_answered']:4d} "
            f"({row['out_of_scope_answered_rate']:5.1%})    {', '.join(marks)}").rstrip()


def _is(value: float, setting: Optional[float]) -> bool:
    return setting is not None and abs(value - setting) < 1e-9


def format_curve(curve: Sequence[Dict[str, Any]], configured: Optional[float] = None,
                 suggested: Optional[float] = None) -> str:
    """The fallback curve as a fixed-width table (configured and suggested thresholds marked)."""
    if not curve:
        return ""
    first = curve[0]
    lines = [f"fallback curve ({first['in_scope']} in-scope, {first['out_of_scope']} out_of_scope "
             "test examples)",
             "threshold" + _CURVE_HEADER[0], "---------" + _CURVE_HEADER[1]]
    for row in curve:
        marks = [mark for mark, setting in (("configured", configured), ("fewest errors", suggested))
                 if _is(row["threshold"], setting)]
        lines.append(_curve_line(row["threshold"], row, marks))
    return "\n".join(lines)


def format_ambiguity_curve(curve: Sequence[Dict[str, Any]], configured: Optional[float] = None) -> str:
    """The ambiguity curve as a fixed-width table (configured ambiguity_threshold marked)."""
    if not curve:
        return ""
    lines = [f"ambiguity curve at threshold {curve[0]['threshold']:.2f}",
             "ambiguity" + _CURVE_HEADER[0], "---------" + _CURVE_HEADER[1]]
    for row in curve:
        marks = ["configured"] if _is(row["ambiguity_threshold"], configured) else []
        lines.append(_curve_line(row["ambiguity_threshold"], row, marks))
    return "\n".join(lines)


def format_details(summary: Dict[str, Any]) -> str:
    """Per-intent precision/recall, per-entity recall, confusion pairs, the fallback and ambiguity curves."""
    intents = summary["intents"]
    lines = [f"intent accuracy with fallback (what the bot answers)  {intents['accuracy']:.3f}"
             f"   ({intents['fallback']} of {intents['support']} fell to {FALLBACK_INTENT})",
             "", "intent                precision  recall  support",
             "--------------------  ---------  ------  -------"]
    for name, row in intents["per_intent"].items():
        lines.append(f"{name:<20}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['support']:7d}")
    lines += ["", "entity                recall  precision  support",
              "--------------------  ------  ---------  -------"]
    for name, row in summary["pipeline_entities"].get("per_type", {}).items():
        lines.append(f"{name:<20}  {row['recall']:6.3f}  {row['precision']:9.3f}  {row['support']:7d}")
    lines += ["", "confusions losing the most (annotated -> predicted: examples)"]
    lines += [f"  {gold} -> {predicted}: {n}" for gold, predicted, n in summary["confusions"]]
    if not summary["confusions"]:
        lines.append("  none")
    fallback = summary["fallback"]
    lines += ["", format_curve(summary["fallback_curve"], fallback["threshold"],
                               summary["suggested_threshold"]),
              f"(ambiguity_threshold {fallback['ambiguity_threshold']:.2f} from config.yml applied at "
              "every threshold)"]
    lines += ["", format_ambiguity_curve(summary["ambiguity_curve"], fallback["ambiguity_threshold"])]
    return "\n".join(lines)


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


def analyse(examples: List[Dict[str, Any]], out: Path,
            fallback: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
    """Everything computed from the parsed examples (entities, intents, confusions, curve)."""
    fallback = fallback or configured_fallback()
    curve = fallback_curve(examples, ambiguity_threshold=fallback["ambiguity_threshold"])
    return {
        "pipeline_entities": pipeline_entities(examples, out),
        "intents": intent_scores(examples),
        "confusions": confusion_pairs(examples),
        "fallback": fallback,
        "fallback_curve": curve,
        "suggested_threshold": best_threshold(curve),
        "ambiguity_curve": ambiguity_curve(examples, fallback["threshold"]),
    }


def evaluate(model: Path, test_data: Path = DEFAULT_TEST_DATA, out: Path = DEFAULT_OUT) -> Dict[str, Any]:
    """Runs both measurements and writes ``<out>/nlu_summary.json``; returns the summary."""
    run_rasa_test(model, test_data, out)
    summary: Dict[str, Any] = {"model": model.name, "test_data": str(test_data)}
    summary.update(read_rasa_reports(out))
    summary.update(analyse(parse_test_data(model, test_data, out), out))
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model .tar.gz (default: current inputs' model)")
    parser.add_argument("--nlu", type=Path, default=DEFAULT_TEST_DATA, help="held-back test data")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument("--curve-only", action="store_true",
                        help="print only the fallback curve (no rasa test nlu)")
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
        if args.curve_only:
            fallback = configured_fallback()
            examples = parse_test_data(model.resolve(), args.nlu.resolve(), args.out.resolve())
            curve = fallback_curve(examples, ambiguity_threshold=fallback["ambiguity_threshold"])
            print(format_curve(curve, fallback["threshold"], best_threshold(curve)))
            return
        summary = evaluate(model.resolve(), args.nlu.resolve(), args.out.resolve())
    except RuntimeError as exc:
        sys.exit(str(exc))
    print(format_table(summary))
    print()
    print(format_details(summary))


if __name__ == "__main__":
    main()
