"""NLU pipeline component after the entity extractors: a message that is only an answer is ``inform``.

When the assistant asks for a place, a 户号, a month or a ticket, customers answer with the value
alone, sometimes with a word around it ("在秦淮区", "谷里营业厅吧", "我的户号是3201234567").
DIET reads such an answer by the words it shares with requests (an unseen district looks like
the districts of outage questions) and can be sure it is ``query_outage``. The training data
labels every such answer ``inform``; this component makes that hold for values it has never
seen: if the values are all of one kind and nothing is left of the text once they, punctuation
and a few connecting words are taken out, the intent is ``inform``. A question about a value
("秦淮区呢", "户号3201234567的电费") keeps words of its own and is left alone; a 户号 with a
month ("3201234567 9月") is two kinds of value, a bill query, and is left to DIET too.

The intent is swapped with ``inform`` in the ranking, confidences included, so the
FallbackClassifier after it sees the same confidences as before.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import ENTITIES, INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

# Words that may surround an answer: where ("在", "我家住在", "这边"), which ("是", "就"), what the
# value is ("户号", "手机号"), and sentence-final particles that do not ask anything (no 呢 or 吗).
CONNECTING_WORDS = (
    "我家住在", "我家在", "我住在", "我们在", "我们家", "我家", "我住", "住在", "就是", "就在", "就去",
    "我的", "户号是", "户号", "账号", "手机号码", "手机号", "手机", "电话号码", "电话", "号码", "编号",
    "单号", "号是", "月份", "这一片", "那一片", "这一带", "那一带", "这边", "那边", "这片", "那片", "这块",
    "那块", "附近", "去", "到", "在", "是", "就", "的", "吧", "啊", "呀", "哦", "嗯", "啦", "了", "哈",
    "我",
)
_PUNCTUATION_OR_SYMBOL = re.compile(r"[\W_]+")
_ONLY_CONNECTING = re.compile("(?:" + "|".join(map(re.escape, CONNECTING_WORDS)) + ")*")


def is_answer_only(text: str, entities: List[Dict[str, Any]], answer_entities: frozenset) -> bool:
    """Whether ``text`` is nothing but values of one of ``answer_entities`` and connecting words."""
    values = [e for e in entities
              if isinstance(e.get("start"), int) and isinstance(e.get("end"), int)]
    if not values or len({e.get("entity") for e in values}) != 1 or values[0].get("entity") not in answer_entities:
        return False
    spans = sorted((e["start"], e["end"]) for e in values)
    rest, position = [], 0
    for start, end in spans:
        rest.append(text[position:start])
        position = max(position, end)
    rest.append(text[position:])
    residue = _PUNCTUATION_OR_SYMBOL.sub("", "".join(rest))
    return _ONLY_CONNECTING.fullmatch(residue) is not None


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=False
)
class AnswerIntent(GraphComponent):
    """Classifies a message made only of slot values as the ``inform`` intent."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """The answer intent and the entities whose values are answers to the assistant's questions."""
        return {
            "intent": "inform",
            "entities": ["area", "hall", "account_number", "phone", "month", "ticket_number",
                         "application_number", "complaint_ticket", "business_type"],
        }

    def __init__(self, config: Dict[Text, Any]) -> None:
        """Keeps the answer intent and entity names."""
        self._intent = config["intent"]
        self._entities = frozenset(config["entities"])

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "AnswerIntent":
        """Creates the component (stateless)."""
        return cls(config)

    def process(self, messages: List[Message]) -> List[Message]:
        """Swaps the predicted intent with ``inform`` for messages that are only an answer."""
        for message in messages:
            intent = message.get(INTENT) or {}
            if not intent.get("name") or intent["name"] == self._intent:
                continue
            if not is_answer_only(message.get(TEXT) or "", message.get(ENTITIES) or [], self._entities):
                continue
            self._promote(message, intent)
        return messages

    def _promote(self, message: Message, intent: Dict[str, Any]) -> None:
        ranking: List[Dict[str, Any]] = [dict(item) for item in message.get(INTENT_RANKING_KEY) or []]
        answer: Optional[Dict[str, Any]] = next((i for i in ranking if i.get("name") == self._intent), None)
        top_confidence = intent.get("confidence", 1.0)
        if answer is None:
            answer = {"name": self._intent, "confidence": 0.0}
            ranking.append(answer)
        for item in ranking:
            if item.get("name") == intent["name"]:
                item["confidence"] = answer["confidence"]
        answer["confidence"] = top_confidence
        ranking.sort(key=lambda item: (item is answer, item.get("confidence", 0.0)), reverse=True)
        message.set(INTENT, {"name": self._intent, "confidence": top_confidence}, add_to_output=True)
        message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
