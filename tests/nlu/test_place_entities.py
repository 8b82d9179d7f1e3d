"""The place-name suffix grammar (bot/components/place_grammar.py) and the PlaceEntities
component that applies it after the entity extractors.

The grammar is pure Python and is checked here on jieba-style (word, flag) tokens; the component
runs in the Rasa env (subprocess) with the real jieba and our user dictionary, without a model.
"""
from bot.components.place_grammar import find_places, repair_places, tokens_with_offsets
from tests.nlu.rasa_env import run_in_rasa_env


def places(pairs):
    text = "".join(word for word, _ in pairs)
    return [(p.entity, p.value) for p in find_places(text, tokens_with_offsets(pairs))]


def test_a_stem_before_a_bare_suffix_is_a_place():
    assert places([("横溪", "ns"), ("街道", "n"), ("今天", "t"), ("停电", "v"), ("吗", "y")]) == [
        ("area", "横溪街道")]
    assert places([("金陵", "nr"), ("苑", "nr"), ("停电", "v")]) == [("area", "金陵苑")]
    assert places([("湖熟", "ns"), ("供电所", "n"), ("在", "p"), ("哪", "r")]) == [("hall", "湖熟供电所")]


def test_a_suffix_ending_a_name_token_and_two_places_side_by_side():
    assert places([("我家", "r"), ("在", "p"), ("虹口区", "ns"), ("曲阳路", "ns"), ("附近", "f")]) == [
        ("area", "虹口区"), ("area", "曲阳路")]
    # the district ends the hall's stem; the longest hall suffix wins
    assert places([("江宁区", "ns"), ("东山", "ns"), ("供电服务", "n"), ("中心", "n"), ("取号", "v")]) == [
        ("hall", "江宁区东山供电服务中心")]
    # a hall is named with its district (the lookup's 江宁区百家湖营业厅), not with a street
    assert places([("六合区", "ns"), ("雄州", "ns"), ("营业厅", "n")]) == [("hall", "六合区雄州营业厅")]
    assert places([("东山", "ns"), ("街道", "n"), ("百家湖", "ns"), ("营业厅", "n")]) == [
        ("area", "东山街道"), ("hall", "百家湖营业厅")]
    # a place's suffix is no stem of the next one
    assert places([("麒麟", "ns"), ("街道", "n"), ("锦华", "nz"), ("路", "n"), ("5", "m"), ("号", "m")]) == [
        ("area", "麒麟街道"), ("area", "锦华路")]
    # a village followed by a road suffix is one name
    assert places([("中关村", "ns"), ("大街", "ns"), ("停电", "v")]) == [("area", "中关村大街")]


def test_ordinary_words_and_pronouns_are_no_place():
    assert places([("我们", "r"), ("小区", "n"), ("停电", "v"), ("了", "ul")]) == []
    assert places([("家里", "s"), ("短路", "v"), ("了", "ul")]) == []
    assert places([("高压", "n"), ("线路", "n"), ("断", "v"), ("了", "ul")]) == []
    assert places([("客户", "n"), ("服务中心", "n"), ("电话", "n")]) == []
    assert places([("去", "v"), ("营业厅", "n"), ("办", "v")]) == []
    assert places([("地址", "n"), ("东山", "ns"), ("街道", "n")]) == [("area", "东山街道")]
    assert places([("联通", "j"), ("营业厅", "n"), ("在", "p"), ("哪", "r")]) == []
    # one-character stems are too short
    assert places([("新", "a"), ("小区", "n")]) == []


def test_repair_extends_a_bare_suffix_and_drops_what_it_cannot_place():
    text = "竹山路停电了"
    grammar = [p for p in find_places(text, tokens_with_offsets([("竹山路", "ns"), ("停电", "v"), ("了", "ul")]))]
    diet = [{"entity": "area", "start": 2, "end": 3, "value": "路", "extractor": "DIETClassifier"}]
    assert repair_places(text, diet, grammar, extractor="PlaceEntities") == [
        {"entity": "area", "start": 0, "end": 3, "value": "竹山路", "extractor": "PlaceEntities",
         "processors": ["PlaceEntities"]}]
    # a one-character area with no place around it is dropped, other types stay
    text = "路上停电了，户号3201234567"
    kept = {"entity": "account_number", "start": 8, "end": 18, "value": "3201234567"}
    assert repair_places(text, [{"entity": "area", "start": 0, "end": 1, "value": "路"}, kept], [],
                         extractor="PlaceEntities") == [kept]


def test_repair_gives_one_entity_per_span():
    text = "东山营业厅人多吗"
    grammar = find_places(text, tokens_with_offsets([("东山", "ns"), ("营业厅", "n"), ("人", "n"), ("多", "m"),
                                                     ("吗", "y")]))
    found = [{"entity": "area", "start": 0, "end": 2, "value": "东山", "extractor": "DIETClassifier"},
             {"entity": "hall", "start": 0, "end": 5, "value": "东山营业厅", "extractor": "RegexEntityExtractor"}]
    assert repair_places(text, found, grammar, extractor="PlaceEntities") == [found[1]]


def test_repair_keeps_a_longer_entity_and_adds_a_missed_place():
    text = "江宁区东山街道和汤山镇停电吗"
    grammar = find_places(text, tokens_with_offsets([
        ("江宁区", "ns"), ("东山", "ns"), ("街道", "n"), ("和", "c"), ("汤山", "ns"), ("镇", "n"),
        ("停电", "v"), ("吗", "y")]))
    diet = [{"entity": "area", "start": 0, "end": 7, "value": "江宁区东山街道", "extractor": "DIETClassifier"}]
    repaired = repair_places(text, diet, grammar, extractor="PlaceEntities")
    assert [(e["value"], e["extractor"]) for e in repaired] == [
        ("江宁区东山街道", "DIETClassifier"), ("汤山镇", "PlaceEntities")]


COMPONENT = r'''
import json, pathlib, tempfile
import jieba
from rasa.engine.graph import ExecutionContext
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.training_data.message import Message
from bot.components.place_entities import PlaceEntities

jieba.setLogLevel(60)
jieba.load_userdict("nlu_data/jieba_dict/userdict.txt")
storage = LocalModelStorage(pathlib.Path(tempfile.mkdtemp()))
component = PlaceEntities.create(PlaceEntities.get_default_config(), storage, Resource("p"),
                                 ExecutionContext(graph_schema=None, model_id="t"))
cases = [
    ("横溪街道今天停电吗", []),
    ("请问龙蟠中路停电到几点", [{"entity": "area", "start": 5, "end": 6, "value": "路",
                                 "extractor": "DIETClassifier"}]),
    ("燕子矶营业厅帮我取个号", []),
    ("家里短路了，我们小区都没电", []),
    ("户号3201234567查9月电费", [{"entity": "account_number", "start": 2, "end": 12,
                                  "value": "3201234567", "extractor": "RegexEntityExtractor"}]),
]
out = []
for text, entities in cases:
    message = Message(data={"text": text, "entities": entities})
    component.process([message])
    out.append([[e["entity"], e["value"]] for e in message.get("entities")])
print(json.dumps(out, ensure_ascii=False))
'''


def test_component_with_real_jieba():
    assert run_in_rasa_env(COMPONENT) == [
        [["area", "横溪街道"]],
        [["area", "龙蟠中路"]],
        [["hall", "燕子矶营业厅"]],
        [],
        [["account_number", "3201234567"]],
    ]
