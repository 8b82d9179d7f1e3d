"""NLU pipeline component after the entity de-duplication: checks and repairs places.

DIET learns places from their shape but still misses unseen ones, and on a road it sometimes
tags the bare suffix ("路") alone. This component tags the message with ``jieba.posseg`` (the
JiebaTokenizer earlier in the pipeline has loaded our user dictionary into jieba) and applies
the suffix grammar of :mod:`bot.components.place_grammar`: no one-character ``area``, no bare
suffix, a piece of a place becomes the whole place, and a place no extractor found is added.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import ENTITIES, TEXT
from rasa.shared.nlu.training_data.message import Message

from bot.components.place_grammar import find_places, repair_places, tokens_with_offsets


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR, is_trainable=False
)
class PlaceEntities(GraphComponent):
    """Checks ``area``/``hall`` entities against a place-name suffix grammar."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """The entity names of the domain for a place below the city and for a hall."""
        return {"area_entity": "area", "hall_entity": "hall"}

    @staticmethod
    def supported_languages() -> Optional[List[Text]]:
        """The suffix grammar is Chinese."""
        return ["zh"]

    @staticmethod
    def required_packages() -> List[Text]:
        """jieba's part-of-speech tagger."""
        return ["jieba"]

    def __init__(self, config: Dict[Text, Any]) -> None:
        """Keeps the entity names."""
        self._names = {"area": config["area_entity"], "hall": config["hall_entity"]}

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "PlaceEntities":
        """Creates the component (stateless)."""
        return cls(config)

    def process(self, messages: List[Message]) -> List[Message]:
        """Replaces each message's place entities by the repaired ones."""
        import jieba.posseg

        for message in messages:
            text = message.get(TEXT)
            if not text:
                continue
            tokens = tokens_with_offsets([(p.word, p.flag) for p in jieba.posseg.lcut(text)])
            places = [
                p._replace(entity=self._names[p.entity]) for p in find_places(text, tokens)
            ]
            entities = message.get(ENTITIES) or []
            repaired = repair_places(
                text, entities, places, extractor=type(self).__name__,
                types=(self._names["area"], self._names["hall"]),
            )
            if repaired != entities:
                message.set(ENTITIES, repaired, add_to_output=True)
        return messages
