"""The custom Rasa components, run with real Rasa objects in the Rasa env (subprocess).

TextNormalizer is checked on a real TrainingData loaded from YAML and then tokenised by the
real JiebaTokenizer with our user dictionary (entity spans must still sit on token
boundaries); EntityDeduplicator behind a real, trained RegexEntityExtractor built from
nlu_data/regex.yml.
"""
from tests.nlu.rasa_env import run_in_rasa_env

NORMALIZE_TRAINING_DATA = r'''
import json
from rasa.engine.graph import ExecutionContext
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.nlu.tokenizers.jieba_tokenizer import JiebaTokenizer
from rasa.shared.nlu.training_data.formats.rasa_yaml import RasaYAMLReader
from rasa.shared.nlu.training_data.message import Message
import tempfile, pathlib

from bot.components.text_normalizer import TextNormalizer

YAML = """
version: "3.1"
nlu:
  - intent: inform
    examples: |
      - 我户号是[３２０１２３４５６７](account_number)
      - 等了…好久，户号[３２０９８７６５４３](account_number)，电话[１３８１２３４５６７８](phone)
      - 户号\u200b[3201\u200b234567](account_number)
      - [上月]{"entity": "month", "value": "上个月"}的电费
      - 排号[Ａ０２３](ticket_number)
      - 户号[3201 234 567](account_number)，[十一月](month)的店费
      - !!!
"""
data = RasaYAMLReader().reads(YAML)
storage = LocalModelStorage(pathlib.Path(tempfile.mkdtemp()))
context = ExecutionContext(graph_schema=None, model_id="t")
normalizer = TextNormalizer.create({}, storage, Resource("n"), context)
data = normalizer.process_training_data(data)
tokenizer = JiebaTokenizer.create(
    {**JiebaTokenizer.get_default_config(), "dictionary_path": "nlu_data/jieba_dict"},
    storage, Resource("t"), context)
data = tokenizer.process_training_data(data)
out = []
for example in data.training_examples:
    tokens = example.get("text_tokens")
    bounds = {t.start for t in tokens} | {t.end for t in tokens}
    out.append({
        "text": example.get("text"),
        "entities": [[e["entity"], e["start"], e["end"], e["value"],
                      example.get("text")[e["start"]:e["end"]]] for e in example.get("entities", [])],
        "aligned": all(e["start"] in bounds and e["end"] in bounds for e in example.get("entities", [])),
    })
message = Message(data={"text": "查下３２０１２３４５６７\u200b上月　电费\x00"})
normalizer.process([message])
out.append({"inference": message.get("text")})
message = Message(data={"text": "<p>！！！</p>"})
normalizer.process([message])
out.append({"inference": message.get("text")})
print(json.dumps(out, ensure_ascii=False))
'''


def test_normalizer_rewrites_training_examples_and_keeps_entities_on_tokens():
    examples = run_in_rasa_env(NORMALIZE_TRAINING_DATA)
    by_text = {e["text"]: e for e in examples[:-2]}
    assert set(by_text) == {
        "我户号是3201234567",
        "等了...好久,户号3209876543,电话13812345678",
        "户号3201234567",
        "上月的电费",
        "排号A023",
        "户号3201234567,11月的电费",
        "!!!",  # a training example without words is left as it is (and logged)
    }
    for example in by_text.values():
        assert example["aligned"], example
        for kind, _start, _end, value, span in example["entities"]:
            # the span text is the (normalised) value, except for a synonym annotation
            assert value == span or (kind, value) == ("month", "上个月"), example
    assert by_text["等了...好久,户号3209876543,电话13812345678"]["entities"] == [
        ["account_number", 10, 20, "3209876543", "3209876543"],
        ["phone", 23, 34, "13812345678", "13812345678"],
    ]
    assert by_text["户号3201234567"]["entities"] == [
        ["account_number", 2, 12, "3201234567", "3201234567"]
    ]
    assert by_text["户号3201234567,11月的电费"]["entities"] == [
        ["account_number", 2, 12, "3201234567", "3201234567"],
        ["month", 13, 16, "11月", "11月"],
    ]
    assert examples[-2] == {"inference": "查下3201234567上月 电费"}
    assert examples[-1] == {"inference": ""}  # markup and symbols only: nothing for the NLU


DEDUPLICATE_BEHIND_REGEX_EXTRACTOR = r'''
import json, pathlib, tempfile
from rasa.engine.graph import ExecutionContext
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.nlu.extractors.regex_entity_extractor import RegexEntityExtractor
from rasa.shared.nlu.training_data.loading import load_data
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.formats.rasa_yaml import RasaYAMLReader

from bot.components.entity_deduplicator import EntityDeduplicator
from bot.components.text_normalizer import TextNormalizer

# The extractor only uses regexes whose name is an annotated entity.
examples = RasaYAMLReader().reads("""
version: "3.1"
nlu:
  - intent: inform
    examples: |
      - [3201234567](account_number) [13812345678](phone) [A023](ticket_number)
      - [YK2026110012](application_number) [9月](month) [新装](business_type)
""")
data = load_data("nlu_data/regex.yml").merge(load_data("nlu_data/synonyms.yml"), examples)
storage = LocalModelStorage(pathlib.Path(tempfile.mkdtemp()))
context = ExecutionContext(graph_schema=None, model_id="t")
config = {**RegexEntityExtractor.get_default_config(), "use_word_boundaries": False,
          "use_lookup_tables": True, "use_regexes": True}
extractor = RegexEntityExtractor.create(config, storage, Resource("r"), context)
extractor.train(data)
normalizer = TextNormalizer.create({}, storage, Resource("n"), context)
dedup = EntityDeduplicator.create(EntityDeduplicator.get_default_config(), storage,
                                  Resource("d"), context)
texts = [
    "我户号是３２０１２３４５６７，电话138 1234 5678",
    "申请号yk2026110012进度",
    "a023排到哪了",
    "32012345678",
    "2026年9月的电费",
    "户号3201234567",
    "二零二六年十月我家用电多少度，9月3日那天停过电",
    "我想办分布式光伏，还有扩容",
]
out = []
for text in texts:
    message = Message(data={"text": text})
    normalizer.process([message])
    extractor.process([message])
    if text == "户号3201234567":
        # what DIET reports for the same span (and a wrong second label on it)
        message.set("entities", message.get("entities") + [
            {"entity": "account_number", "start": 2, "end": 12, "value": "3201234567",
             "extractor": "DIETClassifier", "confidence_entity": 0.99},
            {"entity": "phone", "start": 2, "end": 12, "value": "3201234567",
             "extractor": "DIETClassifier", "confidence_entity": 0.51},
        ])
    dedup.process([message])
    out.append([[e["entity"], e["value"], e["extractor"]] for e in message.get("entities", [])])
print(json.dumps(out, ensure_ascii=False))
'''


def test_regexes_and_deduplicator_with_real_extractor():
    results = run_in_rasa_env(DEDUPLICATE_BEHIND_REGEX_EXTRACTOR)
    regex = "RegexEntityExtractor"
    assert results == [
        [["account_number", "3201234567", regex], ["phone", "13812345678", regex]],
        [["application_number", "YK2026110012", regex]],
        [["ticket_number", "A023", regex]],
        [],  # 11 digits starting with 3: neither a 户号 nor a mobile number
        [["month", "2026年9月", regex]],
        [["account_number", "3201234567", regex]],
        [["month", "2026年10月", regex]],  # 9月3日 is a date, not a month
        [["business_type", "分布式光伏", regex], ["business_type", "扩容", regex]],
    ]


def test_deduplicator_rejects_a_bad_configuration():
    result = run_in_rasa_env(r'''
        import json
        from bot.components.entity_deduplicator import EntityDeduplicator
        try:
            EntityDeduplicator({**EntityDeduplicator.get_default_config(), "strict_entities": "phone"})
            print(json.dumps("accepted"))
        except ValueError as exc:
            print(json.dumps(str(exc)))
    ''')
    assert "strict_entities" in result


def test_training_cache_keys_follow_the_dictionary_and_the_normalisation_code(tmp_path):
    """Rasa reuses cached training steps unless their key changes: edits must change it."""
    (tmp_path / "userdict.txt").write_text("户号 20000 n\n", encoding="utf-8")
    keys = run_in_rasa_env(f'''
        import json, pathlib
        from bot.components.jieba_tokenizer import JiebaUserDictTokenizer
        from bot.components.text_normalizer import TextNormalizer
        from rasa.engine.training.fingerprinting import calculate_fingerprint_key
        folder = pathlib.Path({str(tmp_path)!r})
        config = {{**JiebaUserDictTokenizer.get_default_config(), "dictionary_path": str(folder)}}
        keys = [calculate_fingerprint_key(JiebaUserDictTokenizer, config, {{}})]
        keys.append(calculate_fingerprint_key(JiebaUserDictTokenizer, config, {{}}))
        (folder / "userdict.txt").write_text("户号 20000 n\\n跳闸 10000 v\\n", encoding="utf-8")
        keys.append(calculate_fingerprint_key(JiebaUserDictTokenizer, config, {{}}))
        (folder / "areas.txt").write_text("横溪街道 3000 ns\\n", encoding="utf-8")
        keys.append(calculate_fingerprint_key(JiebaUserDictTokenizer, config, {{}}))
        print(json.dumps({{"tokenizer": keys,
                          "normalizer": TextNormalizer.fingerprint_addon({{}})}}))
    ''')
    tokenizer = keys["tokenizer"]
    assert tokenizer[0] == tokenizer[1], "same dictionary, same key"
    assert len(set(tokenizer[1:])) == 3, "an edited or an added dictionary file changes the key"
    assert isinstance(keys["normalizer"], str) and len(keys["normalizer"]) == 64
