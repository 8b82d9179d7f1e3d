"""AnswerIntent (bot/components/answer_intent.py): a message made only of slot values is
``inform``, run on real Rasa messages in the Rasa env, with the real FallbackClassifier after it."""
import pytest

from tests.nlu.rasa_env import run_in_rasa_env

CASES = r'''
import json, pathlib, tempfile
from rasa.engine.graph import ExecutionContext
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.nlu.classifiers.fallback_classifier import FallbackClassifier
from rasa.shared.nlu.training_data.message import Message
from bot.components.answer_intent import AnswerIntent

storage = LocalModelStorage(pathlib.Path(tempfile.mkdtemp()))
context = ExecutionContext(graph_schema=None, model_id="t")
component = AnswerIntent.create(AnswerIntent.get_default_config(), storage, Resource("a"), context)
fallback = FallbackClassifier.create(
    {**FallbackClassifier.get_default_config(), "threshold": 0.4, "ambiguity_threshold": 0.1},
    storage, Resource("f"), context)

def entity(text, value, name):
    start = text.index(value)
    return {"entity": name, "start": start, "end": start + len(value), "value": value}

def parse(text, entities, ranking):
    ranking = [{"name": n, "confidence": c} for n, c in ranking]
    message = Message(data={"text": text, "entities": entities, "intent": dict(ranking[0]),
                            "intent_ranking": ranking})
    component.process([message])
    fallback.process([message])
    return {"intent": message.get("intent"), "ranking": message.get("intent_ranking")}

out = {}
for text, places, ranking in [
    ("在秦淮区", [("秦淮区", "area")], [("query_outage", 0.97), ("inform", 0.02), ("greet", 0.01)]),
    ("谷里营业厅吧！", [("谷里营业厅", "hall")], [("query_outage", 0.9), ("take_number", 0.06),
                                           ("inform", 0.04)]),
    ("我的户号是3201234567", [("3201234567", "account_number")], [("query_bill", 0.8), ("greet", 0.2)]),
    ("双塘街道五里社区", [("双塘街道", "area"), ("五里社区", "area")], [("query_outage", 0.6),
                                                              ("inform", 0.3), ("deny", 0.1)]),
    ("秦淮区呢", [("秦淮区", "area")], [("query_outage", 0.9), ("inform", 0.1)]),
    ("3201234567的电费", [("3201234567", "account_number")], [("query_bill", 0.95), ("inform", 0.05)]),
    ("为什么这么贵", [("为什么这么贵", "bill_aspect")], [("query_bill", 0.9), ("inform", 0.1)]),
    ("秦淮区停电吗", [("秦淮区", "area")], [("query_outage", 0.99), ("inform", 0.01)]),
    ("3207654321 8月", [("3207654321", "account_number"), ("8月", "month")],
     [("query_bill", 0.78), ("inform", 0.21)]),
    ("在秦淮区", [("秦淮区", "area")], [("query_outage", 0.3), ("inform", 0.25), ("greet", 0.2)]),
]:
    out.setdefault(text, []).append(parse(text, [entity(text, v, n) for v, n in places], ranking))
print(json.dumps(out, ensure_ascii=False))
'''


@pytest.fixture(scope="module")
def out():
    return run_in_rasa_env(CASES)


def test_answers_become_inform_and_questions_stay(out):
    top = {text: [r["intent"]["name"] for r in runs] for text, runs in out.items()}
    assert top["在秦淮区"][0] == "inform"
    assert top["谷里营业厅吧！"] == ["inform"]
    assert top["我的户号是3201234567"] == ["inform"]
    assert top["双塘街道五里社区"] == ["inform"]
    # a question about a value, a value with a request, a phrase entity: untouched
    assert top["秦淮区呢"] == ["query_outage"]
    assert top["3201234567的电费"] == ["query_bill"]
    assert top["为什么这么贵"] == ["query_bill"]
    assert top["秦淮区停电吗"] == ["query_outage"]
    # a 户号 with a month is a bill query (two kinds of value), not an answer
    assert top["3207654321 8月"] == ["query_bill"]


def test_confidences_are_swapped_so_fallback_sees_the_same_figures(out):
    confident = out["在秦淮区"][0]
    assert confident["intent"] == {"name": "inform", "confidence": 0.97}
    assert [(r["name"], r["confidence"]) for r in confident["ranking"]] == [
        ("inform", 0.97), ("query_outage", 0.02), ("greet", 0.01)]
    # inform absent from the ranking: added with the top confidence, the old top gets 0
    account = out["我的户号是3201234567"][0]["ranking"]
    assert [(r["name"], r["confidence"]) for r in account] == [
        ("inform", 0.8), ("greet", 0.2), ("query_bill", 0.0)]
    # an unsure answer still falls back, exactly as it would have without the component
    assert out["在秦淮区"][1]["intent"]["name"] == "nlu_fallback"
