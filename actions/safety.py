"""Fault grading and safety advice (故障分级 / 安全提示).

:func:`grade_fault` reads a fault description: ``urgent`` for a safety hazard (smoke, fire,
sparks, fallen or broken lines, electric shock, leakage, a leaning pole, burning smells),
``high`` when many households or a whole building or area are without power, ``normal`` for
one household (a tripped breaker, voltage, the meter, or no power). A hazard always hears
:func:`safety_advice` first; a tripped household breaker hears :func:`self_help_tripped`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from actions.constants import HOTLINE
from actions.severity import HIGH, NORMAL, URGENT
from actions.text import normalize

# Safety hazards: smoke, fire, sparks, fallen or broken lines, electric shock, leakage.
# "漏电保护器"/"漏保" is the household RCD, not a leak, so it is cut out before matching.
_HAZARD_PATTERNS = [
    re.compile(p)
    for p in (
        r"冒烟|起烟|烟雾|有烟",
        r"着火|起火|失火|火灾|燃烧|烧起来|冒火|火苗|明火",
        r"火花|火星|打火|拉弧|电弧",
        r"断线|线.{0,4}(断|掉|落|垂|倒|裸露|露出|耷拉)",
        r"(掉|落|垂)(在|到)?(地|路)",
        r"触电|被电|电到|电人|电了一下|麻手|手麻|麻麻",
        r"漏电",
        r"(电杆|杆子|线杆|电线杆).{0,4}(倒|歪|断|斜)",
        r"爆炸|炸了|爆了",
        r"烧焦|焦味|糊味|烧黑|烧化|烧熔",
    )
]
_RCD_WORDS = re.compile(r"漏电保护器?|漏电开关|漏电断路器|漏保")
# Many households / a whole building or area without power.
_WIDE_OUTAGE = re.compile(
    r"整栋|整幢|整个楼|全楼|整楼|楼里|楼上楼下|整个单元|全单元|单元都|整个小区|全小区|小区都|"
    r"一片|片区|整条街|整排|一条街|整个村|村里|全村|好几户|好多户|几户|多户|大面积|"
    r"邻居(家)?也|邻居(家)?都没|周围都|附近都|都停了|变压器|电梯也"
)
_TRIPPED = re.compile(r"跳闸|跳了|空开|空气开关|总闸|闸.{0,3}(合|推)不上|漏电保护|漏保|保险丝")


@dataclass(frozen=True)
class FaultGrade:
    """How urgent a fault report is, its category and whether self-help applies."""

    severity: str
    category: str
    tripped: bool


def grade_fault(text: str) -> FaultGrade:
    """Grade a fault description: urgent for safety hazards, high for many households,
    normal for one household (a tripped breaker gets self-help advice as well)."""
    text = normalize(text)
    tripped = bool(_TRIPPED.search(text))
    hazard_text = _RCD_WORDS.sub("", text)
    if any(p.search(hazard_text) for p in _HAZARD_PATTERNS):
        return FaultGrade(URGENT, "safety_hazard", tripped)
    if _WIDE_OUTAGE.search(text):
        return FaultGrade(HIGH, "area_outage", tripped)
    if tripped:
        return FaultGrade(NORMAL, "tripped_breaker", True)
    if re.search(r"电压|忽明忽暗|一闪一闪|闪烁|缺相|电压低|电压高", text):
        return FaultGrade(NORMAL, "voltage", False)
    if re.search(r"电表|表计|不走字|表不亮", text):
        return FaultGrade(NORMAL, "meter", False)
    return FaultGrade(NORMAL, "household_outage", False)


def safety_advice() -> str:
    """What to do right now around a hazard; always the first thing said about one."""
    return (
        "⚠️安全提示：请立即远离故障点，与冒烟、着火的设备或掉落的电线保持至少10米的安全距离，"
        "不要触碰，也不要让老人和孩子靠近；如果是家中设备冒烟着火，在确保自身安全的前提下先拉闸断电，"
        "切勿用水扑救电气火灾；有人触电时不要直接用手拉人，应先断开电源。"
        f"情况紧急请立即拨打{HOTLINE}供电服务热线（发生火灾请同时拨打119）。"
    )


def self_help_tripped() -> str:
    """Self-help for a tripped household breaker: check the residual-current device first."""
    return (
        "温馨提示：如果是家里跳闸，请先检查户内配电箱的漏电保护器（漏保）和空气开关："
        "先断开各分路开关、拔下大功率电器插头，再合上总闸，然后逐路合上分路开关。"
        "如果合上某一路就跳，多半是这一路的电器或线路漏电，请停用该电器并联系电工检修；"
        "如果总闸始终合不上，或您家电表不亮，我来为您安排报修。"
    )
