"""The NLU data follows SPEC's "NLU data rules" and fits the pipeline.

Counts are checked for the intents of this module's owner (the others' files have their own
owners); the rules that break training or evaluation for everyone (test sentences leaking into
training, synonym annotations without a synonym, unknown entities, annotations that do not sit
on token boundaries) are checked on every file.
"""
import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.nlu.rasa_env import run_in_rasa_env

ROOT = Path(__file__).resolve().parents[2]
NLU = ROOT / "nlu_data"
GENERAL_INTENTS = ("greet", "goodbye", "thank", "affirm", "deny", "bot_challenge",
                   "out_of_scope", "inform", "request_human")
ANNOTATION = re.compile(r"\[([^\]]+)\](?:\(([^)]+)\)|(\{[^}]+\}))")
# sentence-final particles: "不用了吧", "是的呢" say no more than "不用", "是的"
FINAL_PARTICLES = "吧呢啊呀哦嘛啦了哈嘞呐喔噢哟咯"


def examples_of(path: Path) -> list[tuple[str, str]]:
    """(intent, raw example line) pairs of an NLU file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    pairs = []
    for block in data.get("nlu", []):
        if "intent" not in block:
            continue
        for line in block["examples"].splitlines():
            line = line.strip()
            if line.startswith("- "):
                pairs.append((block["intent"], line[2:]))
    return pairs


def plain(example: str) -> str:
    return ANNOTATION.sub(lambda m: m.group(1), example)


def annotations(example: str) -> list[tuple[str, str, str]]:
    """(text, entity, value) of every annotation in an example."""
    found = []
    for match in ANNOTATION.finditer(example):
        text, entity, spec = match.group(1), match.group(2), match.group(3)
        if spec:
            attributes = json.loads(spec)
            found.append((text, attributes["entity"], attributes.get("value", text)))
        else:
            found.append((text, entity, text))
    return found


def synonyms() -> dict[str, str]:
    data = yaml.safe_load((NLU / "synonyms.yml").read_text(encoding="utf-8"))
    mapping = {}
    for block in data["nlu"]:
        if "synonym" not in block:
            continue
        for line in block["examples"].splitlines():
            if line.strip().startswith("- "):
                mapping[line.strip()[2:]] = block["synonym"]
    return mapping


def all_files(split: str) -> list[Path]:
    return sorted((NLU / split).glob("*.yml"))


@pytest.mark.parametrize("intent", GENERAL_INTENTS)
def test_each_general_intent_has_enough_distinct_examples(intent):
    train = [plain(e) for i, e in examples_of(NLU / "train" / f"{intent}.yml") if i == intent]
    test = [plain(e) for i, e in examples_of(NLU / "test" / f"{intent}.yml") if i == intent]
    assert len(set(train)) >= 40 and len(set(train)) == len(train), (len(train), len(set(train)))
    assert len(set(test)) >= 10 and len(set(test)) == len(test), (len(test), len(set(test)))


def leak_key(example: str) -> str:
    """What is left of an example once the ways of writing the same sentence are undone.

    Markup removed, NFKC, lower case, every digit run one placeholder (one 户号 is as good as
    another), punctuation and whitespace dropped, and sentence-final particles dropped from the
    end of every clause.
    """
    text = unicodedata.normalize("NFKC", plain(example)).lower()
    text = re.sub(r"\d+", "0", text)
    return "".join(clause.rstrip(FINAL_PARTICLES) for clause in re.split(r"[\W_]+", text))


def test_leak_key_undoes_particles_digits_punctuation_and_markup():
    assert leak_key("不用了吧！") == leak_key("不用") == "不用"
    assert leak_key("户号是[３２０７６５４３２１](account_number)") == leak_key("户号是 3201234567")
    assert leak_key("嗯，对的呀。") == leak_key("嗯对的")
    assert leak_key("ＴＤ") == leak_key("td")
    assert leak_key("停电了，啥时候来电") != leak_key("停水了，啥时候来水")


def test_no_test_sentence_is_a_near_copy_of_a_training_sentence():
    """A held-back item that differs from training only by particles, digits or punctuation
    measures memory, not generalisation."""
    train = {}
    for f in all_files("train"):
        for intent, example in examples_of(f):
            train.setdefault(leak_key(example), f"{intent}: {plain(example)}")
    leaked = [f"{f.name}: {plain(e)}  ~  {train[leak_key(e)]}"
              for f in all_files("test") for _, e in examples_of(f) if leak_key(e) in train]
    assert not leaked, "\n".join(leaked)


def test_no_training_sentence_is_listed_under_two_intents():
    seen = Counter(plain(e) for f in all_files("train") for _, e in examples_of(f))
    assert [text for text, count in seen.items() if count > 1] == []


def test_entities_are_domain_entities_and_synonym_values_are_declared():
    entities = set()
    for domain_file in sorted((ROOT / "bot" / "domain").glob("*.yml")):
        domain = yaml.safe_load(domain_file.read_text(encoding="utf-8")) or {}
        entities.update(e if isinstance(e, str) else next(iter(e)) for e in domain.get("entities", []))
    mapping = synonyms()
    problems = []
    for path in all_files("train") + all_files("test"):
        for _, example in examples_of(path):
            for text, entity, value in annotations(example):
                if entity not in entities:
                    problems.append((path.name, example, f"unknown entity {entity}"))
                if value != text and mapping.get(text) != value:
                    problems.append((path.name, example, f"{text}->{value} not in synonyms.yml"))
    assert not problems


def test_out_of_scope_has_the_hard_negatives_of_other_utilities():
    text = " ".join(plain(e) for _, e in examples_of(NLU / "train" / "out_of_scope.yml"))
    for topic in ("水费", "燃气", "煤气", "话费", "流量", "物业费", "有线电视", "天气", "笑话", "股票"):
        assert topic in text, topic


def test_jieba_user_dictionary_is_well_formed():
    files = sorted((NLU / "jieba_dict").iterdir())
    # JiebaTokenizer loads every file in the folder as a dictionary
    assert [f.name for f in files] == ["userdict.txt"]
    words = []
    for line in files[0].read_text(encoding="utf-8").splitlines():
        word, frequency, tag = line.split(" ")
        # frequency 0 makes jieba always split the word ("月份": "10月" and "10月份" both align)
        assert int(frequency) >= 0 and tag.isalpha(), line
        words.append(word)
    assert len(words) >= 60 and len(set(words)) == len(words)
    for term in ("户号", "峰谷电", "阶梯电价", "跳闸", "空开", "业扩", "增容", "过户", "新装", "销户",
                 "光伏并网", "网上国网", "营业厅", "停电", "抢修", "电费", "欠费", "预存", "代扣",
                 "电表", "漏电保护器"):
        assert term in words, term


def test_every_regex_compiles():
    data = yaml.safe_load((NLU / "regex.yml").read_text(encoding="utf-8"))
    names = set()
    for block in data["nlu"]:
        names.add(block["regex"])
        for line in block["examples"].splitlines():
            if line.strip().startswith("- "):
                re.compile(line.strip()[2:])
    assert {"account_number", "phone", "ticket_number", "application_number"} <= names


ALIGNMENT = r'''
import glob, json, logging, pathlib, tempfile
logging.disable(logging.WARNING)
from rasa.engine.graph import ExecutionContext
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.nlu.tokenizers.jieba_tokenizer import JiebaTokenizer
from rasa.shared.nlu.training_data.loading import load_data
from bot.components.text_normalizer import TextNormalizer

storage = LocalModelStorage(pathlib.Path(tempfile.mkdtemp()))
context = ExecutionContext(graph_schema=None, model_id="t")
normalizer = TextNormalizer.create({}, storage, Resource("n"), context)
tokenizer = JiebaTokenizer.create(
    {**JiebaTokenizer.get_default_config(), "dictionary_path": "nlu_data/jieba_dict"},
    storage, Resource("t"), context)
bad = []
for path in sorted(glob.glob("nlu_data/train/*.yml") + glob.glob("nlu_data/test/*.yml")):
    data = tokenizer.process_training_data(normalizer.process_training_data(load_data(path)))
    for example in data.training_examples:
        tokens = example.get("text_tokens") or []
        bounds = {t.start for t in tokens} | {t.end for t in tokens}
        for e in example.get("entities") or []:
            if e["start"] not in bounds or e["end"] not in bounds:
                bad.append([path, example.get("text"), e["entity"], e["start"], e["end"],
                            [t.text for t in tokens]])
print(json.dumps(bad, ensure_ascii=False))
'''


def test_every_annotation_sits_on_jieba_token_boundaries():
    """A misaligned annotation is silently lost for DIET; fix it with a jieba_dict entry."""
    misaligned = run_in_rasa_env(ALIGNMENT)
    assert misaligned == [], "\n".join(map(str, misaligned))


def test_business_type_lookup_is_longest_first_and_maps_to_canonical_names():
    data = yaml.safe_load((NLU / "synonyms.yml").read_text(encoding="utf-8"))
    lookups = [b for b in data["nlu"] if b.get("lookup") == "business_type"]
    assert len(lookups) == 1
    terms = [line.strip()[2:] for line in lookups[0]["examples"].splitlines() if line.strip()]
    # one regex alternation: an earlier shorter term would cut "光伏并网" down to "光伏"
    assert terms == sorted(terms, key=len, reverse=True)
    canonical = {"缴费", "过户", "新装", "增容", "销户", "光伏并网", "更名", "发票打印", "电价咨询", "故障报修"}
    mapping = synonyms()
    assert set(mapping.values()) & canonical
    unmapped = [t for t in terms if t not in canonical and mapping.get(t) not in canonical]
    assert unmapped == []
