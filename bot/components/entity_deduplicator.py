"""NLU pipeline component placed after the entity extractors: one entity per span and type.

DIET and the RegexEntityExtractor both report the 户号 in "我户号是3201234567"; slot filling would
see it twice (and a list-valued duplicate breaks forms). This component applies
:func:`bot.components.entity_resolution.resolve_entities` to every parsed message.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import ENTITIES
from rasa.shared.nlu.training_data.message import Message

from bot.components.entity_resolution import (
    DEFAULT_MODEL_EXTRACTOR,
    DEFAULT_REGEX_EXTRACTOR,
    DEFAULT_STRICT_TYPES,
    resolve_entities,
)


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR, is_trainable=False
)
class EntityDeduplicator(GraphComponent):
    """Removes duplicate and overlapping entities, preferring the right extractor per type."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """Defaults match the PowerDesk pipeline (DIET + RegexEntityExtractor)."""
        return {
            # Types whose format a regex defines exactly: the regex extractor's result wins.
            "strict_entities": list(DEFAULT_STRICT_TYPES),
            "regex_extractor": DEFAULT_REGEX_EXTRACTOR,
            "model_extractor": DEFAULT_MODEL_EXTRACTOR,
            # Types whose values are case-insensitive codes, upper-cased on the way out.
            "uppercase_entities": ["ticket_number", "application_number"],
            # Types whose values lose spaces and hyphens ("138 1234 5678").
            "compact_entities": ["phone", "account_number"],
        }

    @staticmethod
    def supported_languages() -> Optional[List[Text]]:
        """Language independent."""
        return None

    def __init__(self, config: Dict[Text, Any]) -> None:
        """Keeps the validated configuration."""
        for key in ("strict_entities", "uppercase_entities", "compact_entities"):
            if not isinstance(config.get(key), list):
                raise ValueError(f"EntityDeduplicator: '{key}' must be a list of entity names")
        self._config = config

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "EntityDeduplicator":
        """Creates the component (stateless)."""
        return cls(config)

    def process(self, messages: List[Message]) -> List[Message]:
        """Replaces each message's entities by their deduplicated list."""
        for message in messages:
            entities = message.get(ENTITIES)
            if not entities:
                continue
            message.set(
                ENTITIES,
                resolve_entities(
                    entities,
                    strict_types=self._config["strict_entities"],
                    regex_extractor=self._config["regex_extractor"],
                    model_extractor=self._config["model_extractor"],
                    uppercase_types=self._config["uppercase_entities"],
                    compact_types=self._config["compact_entities"],
                ),
                add_to_output=True,
            )
        return messages
