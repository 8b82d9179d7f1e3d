"""First NLU pipeline component: normalise the message text before it is tokenised.

Runs in training (``process_training_data``: every example, with its entity annotations moved
onto the normalised text) and at inference (``process``), so the tokenizer, featurizers,
regexes and lookup tables always see the same form: half-width, no markup, 户号 digits joined,
Chinese numerals of months and amounts as digits, domain homophone typos fixed. A message with
no letter, digit or Chinese character left becomes empty, which the NLU answers with
``nlu_fallback``. See :mod:`bot.components.normalization` for the details.
"""
from __future__ import annotations

import hashlib
import inspect
import logging
from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import (
    ENTITIES,
    ENTITY_ATTRIBUTE_END,
    ENTITY_ATTRIBUTE_START,
    ENTITY_ATTRIBUTE_VALUE,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.components import normalization
from bot.components.normalization import normalize_text, remap_span

logger = logging.getLogger(__name__)


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False
)
class TextNormalizer(GraphComponent):
    """Rewrites ``text`` to its normalised form (see the module docstring), keeping entity spans valid.

    Registered as a message featurizer (without being a ``Featurizer``) because the default
    recipe only runs tokenizers and featurizers on the training data before training the
    later components; it adds no features itself.
    """

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """No options: the normalisation is fixed so training and inference always agree."""
        return {}

    @staticmethod
    def supported_languages() -> Optional[List[Text]]:
        """Written for Chinese; NFKC is harmless for other languages too."""
        return None

    @classmethod
    def fingerprint_addon(cls, config: Dict[Text, Any]) -> Optional[Text]:
        """Rasa's training cache keys on this class's source only: add the helper module's."""
        return hashlib.sha256(inspect.getsource(normalization).encode()).hexdigest()

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "TextNormalizer":
        """Creates the component (stateless)."""
        return cls()

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Normalises every training example in place, moving its entity annotations along."""
        for example in training_data.training_examples:
            self._normalize_message(example, training=True)
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        """Normalises incoming messages in place."""
        for message in messages:
            self._normalize_message(message)
        return messages

    @staticmethod
    def _normalize_message(message: Message, training: bool = False) -> None:
        text = message.get(TEXT)
        if not isinstance(text, str) or not text:
            return
        normalized = normalize_text(text)
        if not normalized.changed:
            return
        if training and not normalized.text:
            logger.warning("Training example %r has no words: left as it is.", text)
            return
        entities = message.get(ENTITIES)
        if entities and not normalized.length_preserving:
            message.set(ENTITIES, _remap_entities(normalized, entities), add_to_output=False)
        elif entities:
            message.set(
                ENTITIES, [_renormalize_value(normalized, e) for e in entities], add_to_output=False
            )
        message.set(TEXT, normalized.text)


def _renormalize_value(normalized, entity: Dict[Text, Any]) -> Dict[Text, Any]:
    """Rewrites an entity's value when it was the literal (now normalised) span text.

    A value that differs from its span text is a synonym target (``[上月]{"value": "上个月"}``)
    and is left alone.
    """
    start, end = entity.get(ENTITY_ATTRIBUTE_START), entity.get(ENTITY_ATTRIBUTE_END)
    if start is None or end is None:
        return entity
    value = entity.get(ENTITY_ATTRIBUTE_VALUE)
    new_start, new_end = remap_span(normalized, start, end)
    if value == normalized.original[start:end]:
        return {**entity, ENTITY_ATTRIBUTE_VALUE: normalized.text[new_start:new_end]}
    return entity


def _remap_entities(normalized, entities: List[Dict[Text, Any]]) -> List[Dict[Text, Any]]:
    remapped: List[Dict[Text, Any]] = []
    for entity in entities:
        start, end = entity.get(ENTITY_ATTRIBUTE_START), entity.get(ENTITY_ATTRIBUTE_END)
        if start is None or end is None:
            remapped.append(entity)
            continue
        new_start, new_end = remap_span(normalized, start, end)
        if new_start == new_end:
            logger.warning(
                "Dropping entity '%s' of example %r: its span holds only removed characters.",
                entity.get("entity"),
                normalized.original,
            )
            continue
        updated = _renormalize_value(normalized, entity)
        remapped.append(
            {**updated, ENTITY_ATTRIBUTE_START: new_start, ENTITY_ATTRIBUTE_END: new_end}
        )
    return remapped
