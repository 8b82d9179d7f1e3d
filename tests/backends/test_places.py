"""Free-text place matching of the reference city."""
from __future__ import annotations

import pytest

from backends.places import COMMUNITIES, match_communities


def _streets(query: str) -> set[str]:
    return {c.street for c in match_communities(query)}


def _communities(query: str) -> set[str]:
    return {c.community for c in match_communities(query)}


@pytest.mark.parametrize("query, expected", [
    ("百家湖", {"百家湖社区"}),
    ("百家湖社区", {"百家湖社区"}),
    ("江宁区东山街道百家湖社区附近停电了吗", {"百家湖社区"}),
    ("胜太路", {"翠屏社区"}),
    ("江东中路", {"新城社区", "奥体社区"}),
    ("和平村", {"和平村"}),
])
def test_community_level(query, expected):
    assert _communities(query) == expected


def test_street_level_beats_district():
    assert _streets("江宁区东山街道") == {"东山街道"}
    assert _streets("东山") == {"东山街道"}
    assert _communities("江宁街道") == {"江宁社区", "铜井社区"}


def test_bare_shared_name_means_the_widest_place():
    everything_in_jiangning = {c.community for c in COMMUNITIES if c.district == "江宁区"}
    assert _communities("江宁") == everything_in_jiangning
    assert _communities("江宁区") == everything_in_jiangning


@pytest.mark.parametrize("query", ["", "东", "火星", "我家停电了"])
def test_no_match(query):
    assert match_communities(query) == []
