"""Rasa's JiebaTokenizer, retrained when its user dictionary changes.

Rasa caches every training step under a key made of the component's source code, its config
and its inputs. The stock JiebaTokenizer's key does not cover the *contents* of the files in
``dictionary_path``, so after an edit of ``nlu_data/jieba_dict/userdict.txt`` alone, ``rasa
train`` would reuse the old tokenisation (and the old dictionary inside the model) from its
cache. This subclass adds a hash of the dictionary files to the key; it behaves exactly like
JiebaTokenizer otherwise.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, Optional, Text

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.tokenizers.jieba_tokenizer import JiebaTokenizer


def dictionary_fingerprint(dictionary_path: Optional[Text]) -> Optional[Text]:
    """A hash over the names and contents of the files in ``dictionary_path`` (None if unset)."""
    if dictionary_path is None:
        return None
    digest = hashlib.sha256()
    folder = Path(dictionary_path)
    # JiebaTokenizer loads glob(f"{path}/*"): every file directly in the folder.
    for path in sorted(p for p in folder.glob("*") if p.is_file()):
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.MESSAGE_TOKENIZER, is_trainable=True
)
class JiebaUserDictTokenizer(JiebaTokenizer):
    """JiebaTokenizer whose cache key includes the user dictionary's contents."""

    @classmethod
    def fingerprint_addon(cls, config: Dict[Text, Any]) -> Optional[Text]:
        """Changes whenever a dictionary file is added, removed or edited."""
        return dictionary_fingerprint(config.get("dictionary_path"))
