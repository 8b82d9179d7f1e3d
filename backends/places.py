"""Geography of the reference city (宁州市): districts → 街道 → 社区/村 with their roads.

Place names follow the real naming of the area (so the NLU lookup tables and jieba dictionary
match what customers type); the city and every address built on them are fictional.
"""
from __future__ import annotations

from dataclasses import dataclass

CITY = "宁州市"


@dataclass(frozen=True)
class Community:
    district: str
    street: str
    community: str
    roads: tuple[str, ...]


# district -> street -> [(community, roads...)]
_GEOGRAPHY: dict[str, dict[str, list[tuple[str, tuple[str, ...]]]]] = {
    "江宁区": {
        "东山街道": [("百家湖社区", ("双龙大道", "金箔路")), ("竹山社区", ("竹山路", "天元东路")),
                    ("上坊社区", ("上坊路",)), ("殷巷社区", ("殷巷路", "佛城西路"))],
        "秣陵街道": [("翠屏社区", ("胜太路",)), ("九龙湖社区", ("诚信大道", "龙眠大道")),
                    ("将军山社区", ("将军大道",)), ("方山社区", ("方山路",))],
        "麒麟街道": [("麒麟社区", ("麒麟门大街",)), ("泉水社区", ("泉水路",))],
        "禄口街道": [("禄口社区", ("机场路",)), ("铜山社区", ("铜山路",))],
        "湖熟街道": [("湖熟社区", ("湖熟大街",)), ("周岗社区", ("周岗路",)), ("和平村", ("和平路",))],
        "淳化街道": [("淳化社区", ("淳化路",)), ("新桥村", ("新桥路",))],
        "谷里街道": [("谷里社区", ("谷里大街",)), ("张溪社区", ("张溪路",))],
        "江宁街道": [("江宁社区", ("江宁路",)), ("铜井社区", ("铜井路",))],
        "汤山街道": [("汤山社区", ("温泉路",)), ("孟墓社区", ("孟墓路",))],
        "横溪街道": [("横溪社区", ("横溪大街",)), ("陶吴社区", ("陶吴路",)), ("丹阳村", ("丹阳路",))],
    },
    "秦淮区": {
        "夫子庙街道": [("钞库街社区", ("贡院街", "平江府路"))],
        "中华门街道": [("雨花门社区", ("中华路",)), ("长干里社区", ("长干街",))],
        "光华路街道": [("石门坎社区", ("光华路",))],
    },
    "鼓楼区": {
        "宁海路街道": [("颐和路社区", ("宁海路",)), ("西康路社区", ("西康路",))],
        "湖南路街道": [("马台街社区", ("湖南路",))],
        "中央门街道": [("中央门社区", ("中央路",))],
    },
    "玄武区": {
        "新街口街道": [("丹凤街社区", ("中山路",)), ("同仁街社区", ("洪武北路",))],
        "玄武门街道": [("北京东路社区", ("北京东路",))],
    },
    "建邺区": {
        "沙洲街道": [("新城社区", ("江东中路",))],
        "兴隆街道": [("奥体社区", ("江东中路", "梦都大街"))],
    },
    "栖霞区": {
        "仙林街道": [("文苑社区", ("文苑路", "仙林大道"))],
        "尧化街道": [("尧化门社区", ("尧新大道",))],
    },
    "雨花台区": {
        "铁心桥街道": [("铁心桥社区", ("宁丹路",))],
        "雨花新村街道": [("共青团路社区", ("雨花路",))],
    },
}

COMMUNITIES: tuple[Community, ...] = tuple(
    Community(district, street, community, roads)
    for district, streets in _GEOGRAPHY.items()
    for street, communities in streets.items()
    for community, roads in communities
)

DISTRICTS: tuple[str, ...] = tuple(_GEOGRAPHY)
STREETS: tuple[str, ...] = tuple(s for streets in _GEOGRAPHY.values() for s in streets)
ROADS: tuple[str, ...] = tuple(dict.fromkeys(r for c in COMMUNITIES for r in c.roads))

_SUFFIXES = ("街道办事处", "街道", "社区", "新村", "区", "村", "路", "镇")


def core_name(name: str) -> str:
    """A place name without its administrative suffix: 东山街道 → 东山, 百家湖社区 → 百家湖."""
    text = name.strip()
    for suffix in _SUFFIXES:
        if text.endswith(suffix) and len(text) > len(suffix) + 1:
            return text[: -len(suffix)]
    return text


def _levels(community: Community) -> tuple[tuple[int, str], ...]:
    return ((1, community.district), (2, community.street), (3, community.community),
            *((3, road) for road in community.roads))


def core_named(core: str, text: str) -> bool:
    """``core`` occurs in ``text`` not directly followed by an administrative suffix character."""
    start = text.find(core)
    while start >= 0:
        after = text[start + len(core): start + len(core) + 1]
        if after not in ("区", "街", "社", "村", "路", "镇", "大", "新"):
            return True
        start = text.find(core, start + 1)
    return False


def match_communities(query: str) -> list[Community]:
    """The communities a free-text place names, most specific level first.

    A full name (江宁区, 东山街道, 百家湖社区, 胜太路) or a bare core name (东山, 百家湖) counts; a
    bare core shared by several levels (江宁 = 江宁区/江宁街道/江宁社区) means the widest one. The
    deepest level named wins: "江宁区东山街道" is 东山街道's communities, not all of 江宁区.
    """
    text = "".join((query or "").split())
    if len(text) < 2:
        return []
    core_level: dict[str, int] = {}
    for community in COMMUNITIES:
        for level, name in _levels(community):
            core = core_name(name)
            core_level[core] = min(level, core_level.get(core, level))
    matched: list[tuple[int, Community]] = []
    for community in COMMUNITIES:
        best = 0
        for level, name in _levels(community):
            core = core_name(name)
            if name in text:
                best = max(best, level)
            elif len(core) >= 2 and core_level[core] == level and core_named(core, text):
                best = max(best, level)
        if best:
            matched.append((best, community))
    if not matched:
        return []
    deepest = max(level for level, _ in matched)
    return [c for level, c in matched if level == deepest]
