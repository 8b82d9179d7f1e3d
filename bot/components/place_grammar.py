"""A suffix grammar for place names over jieba's part-of-speech tokens, to check and repair the
``area`` and ``hall`` entities of the statistical extractors.

Pure Python (no Rasa or jieba import): the tokens come in as ``(word, flag)`` pairs from
``jieba.posseg``, so the rules are tested in either environment. A *place* is a name stem of at
least two characters, made of name-like tokens (nouns, place and person names, adjectives such
as 幸福), followed by a suffix customers use: 街道 / 镇 / 乡 / 社区 / 村 / 小区 / 花园 / 苑 / 家园 /
公寓 / 山庄 / 城 / 园 / 路 / 街 / 大道 / 号院 ... for an ``area``, 营业厅 / 供电所 / 服务中心 for a
``hall``. A stem stops at a pronoun, verb, particle, number, punctuation or at a token that is
itself a place (江宁区 + 东山街道 are two places), and the suffix may end a longer token (竹山路/ns)
only if that token is a noun and not an ordinary word (线路, 短路, 马路, 城区).

:func:`repair_places` then never lets a one-character ``area``, a bare suffix or a pointer at the
customer's surroundings (隔壁小区, 附近) through, extends a piece of a place to the whole place,
lets the suffix decide between ``area`` and ``hall``, splits two places run together into two
entities, and adds a place that no extractor found.
"""
from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

Entity = Dict[str, Any]

HALL_SUFFIXES = ("供电服务中心", "供电营业厅", "供电营业所", "服务中心", "营业厅", "营业所", "供电所", "供电局",
                 "营业网点", "营业部")
# Landform endings that name a place by themselves (杏林湾, 桃花坞) but are also often part of a
# longer name (沙湾小区, 江湾供电营业厅): they do not end a stem.
LANDFORM_SUFFIXES = ("湾", "坞", "沟", "岗", "庄")
AREA_SUFFIXES = (
    "街道", "社区", "小区", "花园", "家园", "新村", "号院", "大街", "大道", "开发区", "新区", "街区",
    "公寓", "山庄", "大厦", "胡同", "镇", "乡", "村", "区", "县", "苑", "园", "城", "路", "街", "巷",
    *LANDFORM_SUFFIXES,
)
# Numbered roads: 建设三路, 翠竹二街 (jieba tags 三路 as one numeral token).
ROAD_SUFFIXES = ("大街", "大道", "路", "街", "巷")
ORDINALS = frozenset("一二三四五六七八九十")
# Levels above the county end a stem too (南京市 + 江宁区 are two places) but are no entity here.
BOUNDARY_SUFFIXES = ("省", "市")
# Administrative levels: a bare suffix after one of these is no continuation of its name
# (江宁区 + 街道), while 中关村 + 大街 is one place.
ADMIN_SUFFIXES = ("省", "市", "区", "县", "镇", "乡", "街道", "社区")
COUNTY_SUFFIXES = ("区", "县", "市")
# Ordinary words that end like a place.
COMMON_WORDS = frozenset({
    "线路", "电路", "马路", "道路", "公路", "铁路", "网路", "回路", "短路", "断路", "通路", "支路",
    "出路", "思路", "一路", "小路", "大路", "山路", "水路", "城区", "市区", "郊区", "地区", "山区",
    "景区", "园区", "片区", "辖区", "社区", "小区", "街道", "农村", "乡村", "山村", "花园", "家园",
    "大街", "大道", "新区", "新村", "上街", "逛街", "老街", "城市", "都市",
    "公园", "乐园", "校园", "果园", "菜园", "陵园", "幼儿园", "动物园", "植物园", "游乐园",
    "县城", "全城", "进城", "省城", "京城", "古城", "满城", "公寓", "大厦", "小巷", "街巷",
    "海湾", "港湾", "河湾", "船坞", "山沟", "水沟", "阴沟", "地沟", "下岗", "上岗", "站岗", "门岗",
    "村庄", "农庄", "饭庄", "钱庄", "坐庄", "做庄",
})
# Words that point at where the customer is instead of naming a place ("隔壁小区", "我们这边",
# "附近"): no stem, and a DIET entity made only of these and a bare suffix is no place.
DEICTIC_WORDS = tuple(sorted({
    "附近", "周边", "本地", "当地", "这个", "那个", "哪个", "我们", "你们", "他们", "咱们", "我家",
    "你家", "他家", "隔壁", "楼下", "楼上", "家里", "屋里", "门口", "村里", "对面", "旁边", "这里",
    "那里", "这边", "那边", "这块", "那块", "这片", "那片", "这一片", "那一片", "一带", "整个", "全部",
    "这栋楼", "那栋楼", "整栋楼", "这栋", "整栋", "全村", "这", "那", "我", "咱", "本",
}, key=len, reverse=True))
# Stems that name no place ("客户服务中心", "国网营业厅").
GENERIC_STEMS = frozenset({
    "客户", "客服", "电力", "供电", "国网", "电网", "网上", "线上",
    # words that introduce a place rather than name it ("地址东山街道", "建议营业厅多开窗口")
    "地址", "住址", "地点", "位置", "建议", "投诉", "报修", "电话", "户号",
    # other companies' halls are no hall of ours
    "联通", "移动", "电信", "银行", "燃气", "自来水", "水务", "邮政",
    *(word for word in DEICTIC_WORDS if len(word) > 1),
})
# Name-like tags: nouns and names of every kind, abbreviations, adjectives, morphemes (燕子/矶),
# English letters.
NAME_TAG_PREFIXES = ("n", "j", "a", "g", "eng")
# Single locality characters that occur inside names (幸福里, 城南, 河西), and single characters
# of landforms and settlements that jieba tags as anything (柳树 + 湾/v + 村, 枫林 + 湾/zg + 小区).
NAME_LOCALITIES = frozenset("里东西南北中")
NAME_MORPHEMES = frozenset("湾桥庄塘岗湖河山坝营寨屯洲林溪港泉井铺集圩堡坊巷埠滩")
# Numerals that name a place before a suffix (五里社区, 十二街区), not counts (两个小区).
NUMERAL_NAME = frozenset("一二三四五六七八九十百零〇里")
# A number right after a place and before one of these is a house number, not a 户号 (竹山路56号).
HOUSE_UNITS = ("号", "栋", "幢", "单元", "楼", "层", "室", "弄", "巷", "组")
MIN_STEM = 2
MAX_SPAN = 14


class Token(NamedTuple):
    word: str
    flag: str
    start: int
    end: int


class Place(NamedTuple):
    entity: str
    start: int
    end: int
    value: str


def tokens_with_offsets(pairs: Sequence[Tuple[str, str]]) -> List[Token]:
    """``jieba.posseg`` pairs -> tokens with character offsets (they cover the text in order)."""
    out, position = [], 0
    for word, flag in pairs:
        out.append(Token(word, flag, position, position + len(word)))
        position += len(word)
    return out


def _suffix(text: str) -> Optional[Tuple[str, str]]:
    """(entity, suffix) of the longest place suffix ``text`` ends with."""
    for entity, suffixes in (("hall", HALL_SUFFIXES), ("area", AREA_SUFFIXES)):
        for suffix in suffixes:
            if text.endswith(suffix):
                return entity, suffix
    return None


def _ends_a_place(word: str) -> bool:
    return len(word) > 1 and word not in COMMON_WORDS and not word.endswith(LANDFORM_SUFFIXES) and (
        _suffix(word) is not None or word.endswith(BOUNDARY_SUFFIXES)
    )


def _name_like(token: Token, before_suffix: bool = False) -> bool:
    """A token that can be part of a name stem; right before a bare suffix also a verbal noun, a
    place word or a numeral name (胜利/vn + 路, 桥北/s + 营业厅, 五里/m + 社区)."""
    if token.word in GENERIC_STEMS:
        return False
    if len(token.word) == 1 and token.word in NAME_MORPHEMES:
        return True
    if len(token.word) == 1 and token.flag.startswith("f"):
        return token.word in NAME_LOCALITIES
    if before_suffix and token.flag in ("vn", "s") and len(token.word) > 1:
        return True
    if before_suffix and token.flag == "m" and len(token.word) > 1 and set(token.word) <= NUMERAL_NAME:
        return True
    return token.flag.startswith(NAME_TAG_PREFIXES)


def _numbered_road(word: str, suffix: str) -> bool:
    """三路, 二街: an ordinal and a road suffix, the end of a numbered road's name (建设三路)."""
    number = word[: -len(suffix)]
    return suffix in ROAD_SUFFIXES and bool(number) and set(number) <= ORDINALS


def find_places(text: str, tokens: Sequence[Token]) -> List[Place]:
    """Every place the suffix grammar finds in ``text``, left to right, without overlaps."""
    places: List[Place] = []
    for index, token in enumerate(tokens):
        found = _suffix(text[: token.end])
        if found is None:
            continue
        entity, suffix = found
        suffix_start = token.end - len(suffix)
        # the token where the suffix starts; a suffix that starts inside it makes it part stem
        first = index
        while first > 0 and tokens[first].start > suffix_start:
            first -= 1
        head = tokens[first]
        start = head.start
        numbered = _numbered_road(head.word, suffix)
        if head.start < suffix_start and not numbered:
            if head.word in COMMON_WORDS or not head.flag.startswith(("n", "j")):
                continue
        # extend left over name-like tokens that are no place of their own
        floor = places[-1].end if places else 0
        for previous in reversed(tokens[:first]):
            bare = first == index and (head.start == suffix_start or numbered) and previous.end == head.start
            if previous.start < floor or not _name_like(previous, bare) or _ends_a_place(previous.word):
                break
            if token.end - previous.start > MAX_SPAN:
                break
            start = previous.start
        if start == suffix_start and places and places[-1].end == start and first > 0 \
                and not places[-1].value.endswith(ADMIN_SUFFIXES):
            start = places.pop().start
        # a hall is named with its district or county: 江宁区百家湖营业厅 is one hall
        if entity == "hall" and suffix_start - start >= MIN_STEM and places \
                and places[-1].end == start and places[-1].value.endswith(COUNTY_SUFFIXES):
            start = places.pop().start
        stem = text[start:suffix_start]
        if len(stem) < MIN_STEM or stem in GENERIC_STEMS:
            continue
        if places and places[-1].end > start:
            continue
        places.append(Place(entity, start, token.end, text[start:token.end]))
    return places


def _is_bare(value: str) -> bool:
    """A lone suffix, a single character or an ordinary word: never a place by itself."""
    return len(value) <= 1 or value in AREA_SUFFIXES or value in HALL_SUFFIXES or value in COMMON_WORDS


def _names_no_place(value: str) -> bool:
    """Bare, or only words pointing at the customer's surroundings around a bare suffix or
    nothing: "附近", "隔壁小区", "我们这边", "本村", "小区附近"."""
    rest, changed = value, True
    while rest and changed:
        changed = False
        for word in DEICTIC_WORDS:
            if rest.startswith(word):
                rest, changed = rest[len(word):], True
            elif rest.endswith(word) and len(rest) > len(word):
                rest, changed = rest[: -len(word)], True
    return not rest or (rest != value and _is_bare(rest)) or _is_bare(value)


def _house_number(text: str, start: int, end: int, places: Sequence[Place]) -> bool:
    """A short number right after a place and before 号/栋/单元... (竹山路56号, 翠湖花园7栋)."""
    number = text[start:end]
    return (number.isdigit() and len(number) < 6 and text.startswith(HOUSE_UNITS, end)
            and any(p.end == start for p in places))


def repair_places(
    text: str,
    entities: Sequence[Entity],
    places: Sequence[Place],
    extractor: str,
    types: Tuple[str, str] = ("area", "hall"),
) -> List[Entity]:
    """``entities`` with their ``area``/``hall`` checked against the grammar's ``places``.

    A bare suffix or one character is replaced by the place around it, or dropped; so is a
    pointer at the customer's surroundings ("隔壁小区", "附近"); a piece of a place (DIET's "竹山"
    or "山路" of 竹山路) or an entity cutting across a place becomes the whole place; on the span
    of a place the suffix decides the type (雄州营业厅 is a hall, whatever DIET said); a place
    that overlaps no entity of any type is added; an entity made of two places side by side
    (双塘街道五里社区) becomes the two. Entities of other types are left alone, except
    a house number right after a place (竹山路56号), which is no 户号 or phone.
    """
    result: List[Entity] = []
    used: set = set()
    for entity in entities:
        start, end = entity.get("start"), entity.get("end")
        if not isinstance(start, int) or not isinstance(end, int):
            result.append(entity)
            continue
        if entity.get("entity") not in types:
            if not _house_number(text, start, end, places):
                result.append(entity)
            continue
        # the place the entity is a piece of, or one it cuts across ("住枫林" of 我住枫林湾小区)
        around = next((p for p in places if p.start <= start and end <= p.end), None) or next(
            (p for p in places if start < p.start < end < p.end or p.start < start < p.end < end), None)
        if around is not None and ((around.start, around.end) != (start, end)
                                   or around.entity != entity.get("entity")):
            if (around.start, around.end) not in used:
                used.add((around.start, around.end))
                result.append(_entity(around, extractor, entity))
            continue
        # two places run together (双塘街道五里社区): each is its own entity
        pieces = _tiling(places, start, end)
        if pieces:
            for piece in pieces:
                used.add((piece.start, piece.end))
                result.append(_entity(piece, extractor, entity))
            continue
        # a place with a word run into it (东坡村有, 高家庄全村): the place alone
        shorter = next((p for p in places if p.start == start and p.end < end <= p.end + 2
                        and _names_no_place(text[p.end:end])), None)
        if shorter is not None:
            if (shorter.start, shorter.end) not in used:
                used.add((shorter.start, shorter.end))
                result.append(_entity(shorter, extractor, entity))
            continue
        if _names_no_place(text[start:end]):
            continue
        used.add((start, end))
        result.append(entity)
    for place in places:
        if place.entity not in types:
            continue
        if any(
            isinstance(e.get("start"), int) and e["start"] < place.end and place.start < e["end"]
            for e in result
        ):
            continue
        result.append(_entity(place, extractor))
    # one entity per type and span; an extractor's own entity wins over a replacement
    unique: Dict[Tuple[Any, Any, Any], Entity] = {}
    for entity in result:
        key = (entity.get("entity"), entity.get("start"), entity.get("end"))
        if key not in unique or unique[key].get("extractor") == extractor:
            unique[key] = entity
    return sorted(unique.values(), key=lambda e: (e.get("start", -1), e.get("end", -1)))


def _tiling(places: Sequence[Place], start: int, end: int) -> List[Place]:
    """Two or more places that exactly cover ``start``..``end``, each but the last ending in an
    administrative level (街道, 镇, 区 ...); empty otherwise. 江宁区 + 东山街道 are two places, as
    the grammar and the training data have them."""
    inside = [p for p in places if start <= p.start and p.end <= end]
    if len(inside) < 2 or inside[0].start != start or inside[-1].end != end:
        return []
    joined = all(a.end == b.start for a, b in zip(inside, inside[1:]))
    levels = all(p.value.endswith(ADMIN_SUFFIXES) for p in inside[:-1])
    return inside if joined and levels else []


def _entity(place: Place, extractor: str, replaced: Optional[Entity] = None) -> Entity:
    entity: Entity = {
        "entity": place.entity,
        "start": place.start,
        "end": place.end,
        "value": place.value,
        "extractor": extractor,
    }
    if replaced is not None:
        entity["processors"] = [*replaced.get("processors", []), extractor]
    return entity
