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


def test_unseen_roads_compounds_villages_and_halls():
    # a road with its number: the road is the place
    assert places([("建设路", "nt"), ("123", "m"), ("号", "m"), ("停电", "v"), ("了", "ul")]) == [
        ("area", "建设路")]
    # a verbal noun or a place word right before a bare suffix is a stem (胜利路, 桥北营业厅)
    assert places([("胜利", "vn"), ("路", "n"), ("停电", "v")]) == [("area", "胜利路")]
    assert places([("桥北", "s"), ("营业厅", "n"), ("帮", "v"), ("我", "r"), ("拿", "v"), ("个", "q"),
                   ("号", "q")]) == [("hall", "桥北营业厅")]
    # compounds: 山庄 / 公寓 / 城 / a name ending in 园
    assert places([("翠屏", "ns"), ("山庄", "ns"), ("停电", "v")]) == [("area", "翠屏山庄")]
    assert places([("华润", "nz"), ("公寓", "n"), ("没电", "v")]) == [("area", "华润公寓")]
    assert places([("天润", "n"), ("城", "n"), ("停电", "v")]) == [("area", "天润城")]
    assert places([("碧桂园", "nr"), ("停电", "v")]) == [("area", "碧桂园")]
    assert places([("李家湾", "nr"), ("村", "zg"), ("电线杆", "n"), ("倒", "v")]) == [("area", "李家湾村")]
    # a landform character jieba tags as a verb, a numeral name
    assert places([("柳树", "nr"), ("湾", "v"), ("村", "n"), ("有", "v")]) == [("area", "柳树湾村")]
    assert places([("双塘", "n"), ("街道", "n"), ("五里", "m"), ("社区", "n")]) == [
        ("area", "双塘街道"), ("area", "五里社区")]
    assert places([("天润", "n"), ("城", "n"), ("十二", "m"), ("街区", "s")]) == [
        ("area", "天润城"), ("area", "十二街区")]
    assert places([("两个", "m"), ("小区", "n"), ("停电", "v")]) == []
    # lanes, 供电局 and 营业所 halls
    assert places([("大石坝", "ns"), ("巷", "ng"), ("停电", "v")]) == [("area", "大石坝巷")]
    assert places([("江宁", "ns"), ("供电局", "nt"), ("取", "v"), ("个", "q"), ("号", "q")]) == [
        ("hall", "江宁供电局")]
    assert places([("鼓楼", "n"), ("供电", "vn"), ("营业所", "n"), ("排队", "v")]) == [("hall", "鼓楼供电营业所")]
    assert places([("小巷", "n"), ("里", "f"), ("的", "uj"), ("电线", "n")]) == []
    # ordinary words ending like a compound are none
    assert places([("幼儿园", "nr"), ("停电", "v")]) == []
    assert places([("全城", "n"), ("停电", "v")]) == []
    assert places([("发展", "vn"), ("很", "d"), ("好", "a")]) == []


def test_numbered_roads_and_names_ending_in_a_landform():
    # jieba tags 三路 as a numeral: the road is 建设三路, and the house number after it is no month
    assert places([("建设", "vn"), ("三路", "m"), ("停电", "v"), ("了", "ul"), ("吗", "y")]) == [
        ("area", "建设三路")]
    assert places([("翠竹", "nr"), ("二路", "m"), ("12", "m"), ("号", "m"), ("没电", "v")]) == [
        ("area", "翠竹二路")]
    assert places([("三路", "m"), ("停电", "v")]) == []
    assert places([("杏林", "ns"), ("湾", "zg"), ("停电", "v"), ("了", "ul")]) == [("area", "杏林湾")]
    assert places([("桃花坞", "ns"), ("那边", "r"), ("停电", "v")]) == [("area", "桃花坞")]
    assert places([("水磨沟", "n"), ("停电", "v")]) == [("area", "水磨沟")]
    assert places([("黄泥", "n"), ("岗", "n")]) == [("area", "黄泥岗")]
    assert places([("高家庄", "nr"), ("全村", "n"), ("没", "v"), ("电", "n")]) == [("area", "高家庄")]
    # ordinary words with those endings
    assert places([("他", "r"), ("下岗", "v"), ("了", "ul")]) == []
    assert places([("海湾", "n"), ("停电", "v")]) == []


def test_repair_trims_a_word_run_into_a_place():
    text = "东坡村有电没"
    grammar = find_places(text, tokens_with_offsets([("东坡", "ns"), ("村", "n"), ("有", "v"), ("电", "n"),
                                                     ("没", "v")]))
    diet = [{"entity": "area", "start": 0, "end": 4, "value": "东坡村有", "extractor": "DIETClassifier"}]
    assert [e["value"] for e in repair_places(text, diet, grammar, extractor="PlaceEntities")] == ["东坡村"]
    text = "高家庄全村没电"
    grammar = find_places(text, tokens_with_offsets([("高家庄", "nr"), ("全村", "n"), ("没", "v"), ("电", "n")]))
    diet = [{"entity": "area", "start": 0, "end": 5, "value": "高家庄全村", "extractor": "DIETClassifier"}]
    assert [e["value"] for e in repair_places(text, diet, grammar, extractor="PlaceEntities")] == ["高家庄"]
    # a name after a place is part of what DIET found (江宁区东山): kept
    text = "江宁区东山停电"
    grammar = find_places(text, tokens_with_offsets([("江宁区", "ns"), ("东山", "ns"), ("停电", "v")]))
    diet = [{"entity": "area", "start": 0, "end": 5, "value": "江宁区东山", "extractor": "DIETClassifier"}]
    assert repair_places(text, diet, grammar, extractor="PlaceEntities") == diet
    # the house number after a numbered road is no month
    text = "翠竹二路12号没电"
    grammar = find_places(text, tokens_with_offsets([("翠竹", "nr"), ("二路", "m"), ("12", "m"), ("号", "m"),
                                                     ("没电", "v")]))
    diet = [{"entity": "area", "start": 2, "end": 4, "value": "二路", "extractor": "DIETClassifier"},
            {"entity": "month", "start": 4, "end": 6, "value": "12", "extractor": "DIETClassifier"}]
    assert [(e["entity"], e["value"]) for e in repair_places(text, diet, grammar, extractor="PlaceEntities")] == [
        ("area", "翠竹二路")]


def test_pointers_at_the_surroundings_are_no_place():
    assert places([("隔壁", "s"), ("小区", "n"), ("停电", "v"), ("了", "ul"), ("吗", "y")]) == []
    assert places([("楼下", "s"), ("营业厅", "n"), ("人", "n"), ("多", "m"), ("吗", "y")]) == []
    for value in ("隔壁小区", "我们小区", "附近", "这边", "我们这边", "小区附近", "本村", "这一片"):
        text = value + "停电了"
        diet = [{"entity": "area", "start": 0, "end": len(value), "value": value, "extractor": "DIETClassifier"}]
        assert repair_places(text, diet, [], extractor="PlaceEntities") == [], value
    # a name keeps its place even next to such a word
    text = "幸福里停电了"
    diet = [{"entity": "area", "start": 0, "end": 3, "value": "幸福里", "extractor": "DIETClassifier"}]
    assert repair_places(text, diet, [], extractor="PlaceEntities") == diet


def test_a_house_number_after_a_place_is_no_account_number():
    text = "长虹路210号停电了吗，户号3201234567"
    grammar = find_places(text, tokens_with_offsets([
        ("长虹路", "nr"), ("210", "m"), ("号", "m"), ("停电", "v"), ("了", "ul"), ("吗", "y"), ("，", "x"),
        ("户号", "n"), ("3201234567", "m")]))
    diet = [{"entity": "area", "start": 0, "end": 3, "value": "长虹路", "extractor": "DIETClassifier"},
            {"entity": "account_number", "start": 3, "end": 6, "value": "210", "extractor": "DIETClassifier"},
            {"entity": "account_number", "start": 13, "end": 23, "value": "3201234567",
             "extractor": "RegexEntityExtractor"}]
    assert repair_places(text, diet, grammar, extractor="PlaceEntities") == [diet[0], diet[2]]


def test_the_suffix_decides_the_type_on_the_same_span():
    text = "六合区雄州营业厅在哪"
    grammar = find_places(text, tokens_with_offsets([("六合区", "ns"), ("雄州", "ns"), ("营业厅", "n"),
                                                     ("在", "p"), ("哪", "r")]))
    diet = [{"entity": "area", "start": 0, "end": 8, "value": "六合区雄州营业厅", "extractor": "DIETClassifier"}]
    assert [(e["entity"], e["value"]) for e in repair_places(text, diet, grammar, extractor="PlaceEntities")] == [
        ("hall", "六合区雄州营业厅")]
    text = "东山街道停电"
    grammar = find_places(text, tokens_with_offsets([("东山", "ns"), ("街道", "n"), ("停电", "v")]))
    diet = [{"entity": "hall", "start": 0, "end": 4, "value": "东山街道", "extractor": "DIETClassifier"}]
    assert [(e["entity"], e["value"]) for e in repair_places(text, diet, grammar, extractor="PlaceEntities")] == [
        ("area", "东山街道")]


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
    text = "东山街道百家湖花园和汤山镇停电吗"
    grammar = find_places(text, tokens_with_offsets([
        ("东山", "ns"), ("街道", "n"), ("百家", "nz"), ("湖", "n"), ("花园", "n"), ("和", "c"),
        ("汤山", "ns"), ("镇", "n"), ("停电", "v"), ("吗", "y")]))
    diet = [{"entity": "area", "start": 4, "end": 9, "value": "百家湖花园", "extractor": "DIETClassifier"}]
    repaired = repair_places(text, diet, grammar, extractor="PlaceEntities")
    assert [(e["value"], e["extractor"]) for e in repaired] == [
        ("东山街道", "PlaceEntities"), ("百家湖花园", "DIETClassifier"), ("汤山镇", "PlaceEntities")]


def test_repair_splits_places_run_together():
    text = "江宁区东山街道五里社区停电吗"
    grammar = find_places(text, tokens_with_offsets([
        ("江宁区", "ns"), ("东山", "ns"), ("街道", "n"), ("五里", "m"), ("社区", "n"), ("停电", "v"),
        ("吗", "y")]))
    diet = [{"entity": "area", "start": 0, "end": 11, "value": text[:11], "extractor": "DIETClassifier"}]
    assert [(e["entity"], e["value"]) for e in repair_places(text, diet, grammar, extractor="PlaceEntities")] == [
        ("area", "江宁区"), ("area", "东山街道"), ("area", "五里社区")]
    # one name with a place inside it stays one (中关村大街: the village is no administrative level)
    text = "中关村大街停电吗"
    grammar = find_places(text, tokens_with_offsets([("中关村", "ns"), ("大街", "ns"), ("停电", "v"),
                                                     ("吗", "y")]))
    diet = [{"entity": "area", "start": 0, "end": 5, "value": "中关村大街", "extractor": "DIETClassifier"}]
    assert repair_places(text, diet, grammar, extractor="PlaceEntities") == diet


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
    ("在六合区雄州营业厅拿个号", [{"entity": "area", "start": 1, "end": 9, "value": "六合区雄州营业厅",
                                   "extractor": "DIETClassifier"}]),
    ("隔壁小区也停电了吗", [{"entity": "area", "start": 0, "end": 4, "value": "隔壁小区",
                             "extractor": "DIETClassifier"}]),
    ("胜利路58号的电线杆倒了", []),
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
        [["hall", "六合区雄州营业厅"]],
        [],
        [["area", "胜利路"]],
        [["account_number", "3201234567"]],
    ]
