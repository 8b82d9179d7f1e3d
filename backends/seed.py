"""Deterministic reference data: accounts, halls, outages and applications.

Everything comes from one fixed random seed, so every fresh database holds the same data. Dates
are stored relative to today (see ``backends.db``); monthly consumption is not stored at all but
derived from the account's profile by :func:`backends.billing.monthly_usage`, so bills are
always the last 12 full months.
"""
from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import dataclass
from typing import Optional

from backends import demo_accounts as demo
from backends.catalog import BUSINESS_TYPES
from backends.db import Database
from backends.places import CITY, COMMUNITIES, Community

SEED = 20261123
RESIDENTIAL, COMMERCIAL, ENTERPRISE = 240, 45, 15

SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段钱汤尹黎易常武乔贺赖龚文"  # noqa: E501 - data
GIVEN = "建国秀英桂兰志强明华海燕春梅玉兰德胜丽娟晓东文静子涵雨轩浩然欣怡俊杰思远佳琪宇航婷婷伟红军永刚淑珍凤英慧敏家豪梓萱一鸣若曦国庆小龙雪梅金凤立新卫东"  # noqa: E501 - data
SHOP_WORDS = ("好邻居", "苏果", "金鹰", "老王", "同福", "百味", "鑫源", "惠民", "悦来", "聚福", "春晓",
              "蓝天", "宏达", "恒信", "喜洋洋", "一品")
SHOP_KINDS = ("超市", "餐饮店", "便利店", "理发店", "药房", "面馆", "烘焙坊", "洗衣店", "茶社",
              "汽车维修部", "宾馆", "火锅店")
FIRM_WORDS = ("恒达", "中宁", "华瑞", "金陵", "天元", "科创", "鼎盛", "协力", "长江", "新纪元",
              "德龙", "瑞丰", "宏图", "九龙", "东方")
FIRM_KINDS = ("精密机械", "电子科技", "新材料", "食品", "纺织", "汽车零部件", "医药", "印刷包装",
              "智能装备", "冷链物流")
MOBILE_PREFIXES = ("130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151",
                   "152", "155", "157", "158", "159", "177", "180", "181", "182", "186", "187",
                   "188", "189", "199")
MANAGERS = (("周立伟", "13951760231"), ("孙晓燕", "13851920457"), ("陈国栋", "13770612384"),
            ("刘芳", "15905183326"), ("王海涛", "18951750912"), ("朱丽萍", "13605189074"))


# 客户经理 of 政企/大客户 accounts: (id, name); the id names the hand-off queue manager:<id>.
CUSTOMER_MANAGERS = (("KH01", "周立伟"), ("KH02", "孙晓燕"), ("KH03", "陈国栋"), ("KH04", "刘芳"))


@dataclass
class AccountRow:
    account_number: str
    name: str
    customer_type: str
    address: str
    community: Community
    tariff_code: str
    status: str
    phone: str
    base_kwh: int
    peak_percent: int
    payer: str
    unpaid_bills: int = 0
    credit_fen: int = 0


def _community(district: str, street: str, community: str) -> Community:
    return next(c for c in COMMUNITIES
                if (c.district, c.street, c.community) == (district, street, community))


def _address(rng: random.Random, place: Community, customer_type: str,
             road: Optional[str] = None) -> str:
    road = road or rng.choice(place.roads)
    prefix = f"{CITY}{place.district}{place.street}{place.community}"
    if customer_type == "residential":
        if place.community.endswith("村") and not place.community.endswith("新村"):
            return f"{prefix}{rng.randint(1, 12)}组{rng.randint(1, 60)}号"
        return (f"{prefix}{road}{rng.randint(1, 200) * 8}号{rng.randint(1, 24)}栋"
                f"{rng.randint(1, 4)}单元{rng.randint(1, 28)}0{rng.randint(1, 4)}室")
    if customer_type == "commercial":
        return f"{prefix}{road}{rng.randint(1, 300) * 2}号{rng.choice(('底商', '商铺', '1楼'))}"
    return f"{prefix}{road}{rng.randint(1, 60) * 10}号"


def _demo_accounts() -> list[AccountRow]:
    rng = random.Random(SEED - 1)
    bjh = _community("江宁区", "东山街道", "百家湖社区")
    cp = _community("江宁区", "秣陵街道", "翠屏社区")
    zs = _community("江宁区", "东山街道", "竹山社区")
    lk = _community("江宁区", "禄口街道", "禄口社区")
    ds = _community("江宁区", "东山街道", "上坊社区")
    return [
        AccountRow(demo.RESIDENTIAL_TOU, "张建国", "residential",
                   f"{CITY}江宁区东山街道百家湖社区双龙大道1688号3栋2单元501室", bjh,
                   "RES_TIERED_TOU", "active", demo.RESIDENTIAL_TOU_PHONE, 330, 58, "prompt"),
        AccountRow(demo.OVERDUE, "李秀英", "residential",
                   f"{CITY}江宁区秣陵街道翠屏社区胜太路68号12栋1单元302室", cp,
                   "RES_TIERED", "active", demo.OVERDUE_PHONE, 210, 0, "overdue", unpaid_bills=2),
        AccountRow(demo.COMMERCIAL, "宁州市百家湖餐饮管理有限公司", "commercial",
                   f"{CITY}江宁区东山街道竹山社区竹山路218号底商", zs,
                   "COM_TOU", "active", demo.COMMERCIAL_PHONE, 4200, 71, "prepaid",
                   credit_fen=1_268_450),
        AccountRow(demo.ENTERPRISE, "宁州恒达精密机械有限公司", "enterprise",
                   f"{CITY}江宁区禄口街道禄口社区机场路1200号", lk,
                   "ENT_TOU", "active", demo.ENTERPRISE_PHONE, 86000, 64, "prompt"),
        AccountRow(demo.CLOSED, "王桂兰", "residential", _address(rng, ds, "residential"), ds,
                   "RES_TIERED", "closed", demo.CLOSED_PHONE, 90, 0, "prompt"),
    ]


def _accounts(rng: random.Random) -> list[AccountRow]:
    rows = _demo_accounts()
    used_numbers = {r.account_number for r in rows} | {demo.NEW_CONNECTION_ACCOUNT}
    used_phones = {r.phone for r in rows}

    def number() -> str:
        while True:
            candidate = "3" + "".join(str(rng.randint(0, 9)) for _ in range(9))
            if candidate not in used_numbers:
                used_numbers.add(candidate)
                return candidate

    def phone() -> str:
        while True:
            candidate = rng.choice(MOBILE_PREFIXES) + f"{rng.randint(0, 99_999_999):08d}"
            if candidate not in used_phones:
                used_phones.add(candidate)
                return candidate

    def person() -> str:
        given = GIVEN[2 * rng.randrange(len(GIVEN) // 2):][:2]
        return rng.choice(SURNAMES) + (given if rng.random() < 0.8 else given[0])

    for i in range(RESIDENTIAL):
        place = rng.choice(COMMUNITIES)
        tou = rng.random() < 0.3
        payer = rng.choices(("prompt", "late", "overdue", "prepaid"), (65, 12, 13, 10))[0]
        rows.append(AccountRow(
            number(), person(), "residential", _address(rng, place, "residential"), place,
            "RES_TIERED_TOU" if tou else "RES_TIERED", "closed" if i % 80 == 79 else "active",
            phone(), rng.randint(90, 420), rng.randint(45, 70) if tou else 0, payer,
            unpaid_bills=rng.randint(1, 3) if payer == "overdue" else 0,
            credit_fen=rng.randint(50, 800) * 100 if payer == "prepaid" else 0))
    for _ in range(COMMERCIAL):
        place = rng.choice(COMMUNITIES)
        road = rng.choice(place.roads)
        tou = rng.random() < 0.5
        payer = rng.choices(("prompt", "late", "overdue", "prepaid"), (60, 15, 10, 15))[0]
        rows.append(AccountRow(
            number(), f"{CITY}{core(road)}{rng.choice(SHOP_WORDS)}{rng.choice(SHOP_KINDS)}",
            "commercial", _address(rng, place, "commercial", road), place,
            "COM_TOU" if tou else "COM_FLAT", "active", phone(), rng.randint(800, 9000),
            rng.randint(60, 80) if tou else 0, payer,
            unpaid_bills=1 if payer == "overdue" else 0,
            credit_fen=rng.randint(20, 200) * 1000 if payer == "prepaid" else 0))
    for _ in range(ENTERPRISE):
        place = rng.choice([c for c in COMMUNITIES if c.district == "江宁区"])
        rows.append(AccountRow(
            number(), f"宁州{rng.choice(FIRM_WORDS)}{rng.choice(FIRM_KINDS)}有限公司", "enterprise",
            _address(rng, place, "enterprise"), place, "ENT_TOU", "active", phone(),
            rng.randint(30_000, 220_000), rng.randint(55, 75),
            rng.choices(("prompt", "late", "overdue"), (80, 15, 5))[0],
            unpaid_bills=0))
    for row in rows:
        if row.payer == "overdue" and not row.unpaid_bills:
            row.unpaid_bills = 1
    return rows


def core(road: str) -> str:
    return road[:-2] if road.endswith(("大道", "大街")) else road.rstrip("路街")


HALLS = (
    # hall_id, name, district, street, address, weekday hours, weekend hours, business types
    ("H01", "江宁区东山营业厅", "江宁区", "东山街道", "江宁区东山街道竹山路568号",
     "08:30-17:30", "09:00-16:00", None),
    ("H02", "江宁区百家湖营业厅", "江宁区", "东山街道", "江宁区东山街道双龙大道1539号",
     "08:30-17:30", "09:00-12:00", ("payment", "transfer", "rename", "invoice", "tariff_consult",
                                    "new_connection", "pv_grid")),
    ("H03", "江宁区秣陵营业厅", "江宁区", "秣陵街道", "江宁区秣陵街道胜太路99号",
     "08:30-17:00", None, ("payment", "transfer", "rename", "invoice", "new_connection",
                           "capacity_increase", "account_closure", "fault_repair")),
    ("H04", "江宁区麒麟营业厅", "江宁区", "麒麟街道", "江宁区麒麟街道麒麟门大街36号",
     "08:30-17:00", None, ("payment", "invoice", "new_connection", "transfer", "tariff_consult")),
    ("H05", "江宁区禄口营业厅", "江宁区", "禄口街道", "江宁区禄口街道机场路88号",
     "08:30-17:00", "09:00-12:00", ("payment", "invoice", "new_connection", "capacity_increase",
                                    "pv_grid", "account_closure")),
    ("H06", "江宁区湖熟营业厅", "江宁区", "湖熟街道", "江宁区湖熟街道湖熟大街120号",
     "08:30-17:00", None, ("payment", "invoice", "new_connection", "transfer", "pv_grid",
                           "fault_repair")),
    ("H07", "江宁区淳化营业厅", "江宁区", "淳化街道", "江宁区淳化街道淳化路16号",
     "08:30-17:00", None, ("payment", "invoice", "new_connection", "transfer", "pv_grid")),
    ("H08", "江宁区谷里营业厅", "江宁区", "谷里街道", "江宁区谷里街道谷里大街55号",
     "08:30-17:00", None, ("payment", "invoice", "new_connection", "pv_grid", "rename")),
    ("H09", "江宁区江宁营业厅", "江宁区", "江宁街道", "江宁区江宁街道江宁路201号",
     "08:30-17:00", None, ("payment", "invoice", "new_connection", "transfer", "account_closure")),
    ("H10", "鼓楼区中央门营业厅", "鼓楼区", "中央门街道", "鼓楼区中央门街道中央路258号",
     "00:00-24:00", "00:00-24:00", ("payment", "invoice", "tariff_consult")),
)


def _halls(conn: sqlite3.Connection) -> None:
    everything = tuple(b.code for b in BUSINESS_TYPES)
    for order, (hall_id, name, district, street, address, weekday, weekend, types) in enumerate(HALLS):
        conn.execute(
            "INSERT INTO halls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (hall_id, name, CITY + address, district, street, weekday, weekend,
             json.dumps(list(types or everything)), order))


PLANNED_REASONS = ("10千伏线路检修", "配合市政道路施工迁改线路", "配电变压器增容改造",
                   "线路绝缘化改造", "开关柜预防性试验", "配网自动化设备安装调试")
FAULT_REASONS = ("10千伏线路故障跳闸", "电缆被施工外力破坏", "配电变压器故障", "雷击导致线路故障",
                 "树障导致线路短路")


def _outages(conn: sqlite3.Connection, rng: random.Random) -> None:
    bjh = _community("江宁区", "东山街道", "百家湖社区")
    cp = _community("江宁区", "秣陵街道", "翠屏社区")
    rows: list[tuple] = []

    def planned(place: Community, day: int, start: str, end: str) -> None:
        road = rng.choice(place.roads)
        rows.append(("planned", place, f"{place.community}{road}沿线（{road}{rng.randint(1, 40) * 10}号至"
                     f"{rng.randint(41, 90) * 10}号）", rng.choice(PLANNED_REASONS),
                     day, start, end, None, None, None))

    def fault(place: Community, start: int, end: int, restored: Optional[int]) -> None:
        road = rng.choice(place.roads)
        rows.append(("fault", place, f"{place.community}{road}一带", rng.choice(FAULT_REASONS),
                     None, None, None, start, end, restored))

    planned(bjh, 1, "08:30", "17:30")                  # demo: tomorrow at 百家湖社区
    fault(cp, -50, 130, None)                          # demo: ongoing now at 翠屏社区
    others = [c for c in COMMUNITIES if c not in (bjh, cp)]
    rng.shuffle(others)
    for place, day, start, end in zip(others, (-6, -2, 0, 2, 3, 4, 6, 9, 13, 20),
                                      ("08:00", "09:00", "00:30", "08:30", "13:00", "07:30",
                                       "09:00", "08:00", "08:30", "09:00"),
                                      ("18:00", "15:00", "05:30", "16:30", "17:00", "12:00",
                                       "17:30", "18:00", "11:30", "16:00")):
        planned(place, day, start, end)
    for place, (start, end, restored) in zip(others[10:], ((-95, 145, None), (-25, 215, None),
                                                           (-1500, -1260, -1300), (-3000, -2880, -2850),
                                                           (-400, -200, -170))):
        fault(place, start, end, restored)
    for i, (kind, place, area, reason, day, start, end, s_min, e_min, r_min) in enumerate(rows, 1):
        outage_id = f"{'JH' if kind == 'planned' else 'GZ'}{i:05d}"
        conn.execute("INSERT INTO outages (outage_id, kind, district, street, community, affected_area,"
                     " reason, day_offset, start_clock, end_clock, start_offset_min, end_offset_min,"
                     " restored_offset_min) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (outage_id, kind, place.district, place.street, place.community, area, reason,
                      day, start, end, s_min, e_min, r_min))
    # The outage in 3 days was moved there from the day after tomorrow, three hours ago.
    conn.execute("UPDATE outages SET revision = 2, changed_offset_min = -180, previous_day_offset = 2,"
                 " previous_start_clock = start_clock, previous_end_clock = end_clock"
                 " WHERE kind = 'planned' AND day_offset = 3")


STAGES = {
    "新装": {"residential": ("受理", "现场勘查", "装表接电"),
           "other": ("受理", "现场勘查", "供电方案答复", "工程施工", "竣工检验", "装表接电")},
    "增容": {"residential": ("受理", "现场勘查", "装表接电"),
           "other": ("受理", "现场勘查", "供电方案答复", "工程施工", "竣工检验", "装表接电")},
    "过户": {"residential": ("受理", "资料审核", "办结"), "other": ("受理", "资料审核", "办结")},
    "光伏并网": {"residential": ("受理", "现场勘查", "接入方案答复", "并网验收", "并网调试"),
             "other": ("受理", "现场勘查", "接入方案答复", "并网验收", "并网调试")},
    "销户": {"residential": ("受理", "现场拆表", "电费结清", "办结"),
           "other": ("受理", "现场拆表", "电费结清", "办结")},
}


def _stage_plan(rng: random.Random, business: str, customer_type: str, submitted: int,
                done: int, finished: bool) -> list[dict]:
    """Stages with day offsets: the first ``done`` completed, the next one current."""
    names = STAGES[business]["residential" if customer_type == "residential" else "other"]
    stages, day = [], submitted
    for index, name in enumerate(names):
        if index > done or (index == done and finished):
            break
        end = None
        if index < done:
            end = min(day + rng.randint(0, 3), -1 if not finished else 0)
            end = max(end, day)
        stages.append({"name": name, "start_offset_days": day, "end_offset_days": end,
                       "clock": f"{rng.randint(9, 16):02d}:{rng.choice((0, 15, 30, 45)):02d}"})
        if end is not None:
            day = end
    return stages


def _application_row(number: str, account: str, business: str, customer_type: str,
                     submitted: int, status: str, stages: list[dict], manager: tuple[str, str],
                     rng: random.Random) -> tuple:
    return (number, account, business, customer_type, submitted,
            f"{rng.randint(9, 16):02d}:{rng.choice((5, 20, 35, 50)):02d}", status,
            json.dumps(stages, ensure_ascii=False), manager[0], manager[1])


def _applications(conn: sqlite3.Connection, rng: random.Random, accounts: list[AccountRow]) -> None:
    rows = []

    def fixed(number, account, business, ctype, submitted, names_done, manager):
        names = STAGES[business]["residential" if ctype == "residential" else "other"]
        stages, day = [], submitted
        for index, name in enumerate(names[: names_done + 1]):
            end = None if index == names_done else day + 1
            stages.append({"name": name, "start_offset_days": day, "end_offset_days": end,
                           "clock": "10:00"})
            if end is not None:
                day = end
        rows.append(_application_row(number, account, business, ctype, submitted, "in_progress",
                                     stages, manager, rng))

    fixed(demo.DEMO_PV_APPLICATION, demo.RESIDENTIAL_TOU, "光伏并网", "residential", -4, 2, MANAGERS[0])
    fixed(demo.DEMO_CAPACITY_APPLICATION, demo.ENTERPRISE, "增容", "enterprise", -12, 2, MANAGERS[1])
    fixed(demo.DEMO_NEW_CONNECTION_APPLICATION, demo.NEW_CONNECTION_ACCOUNT, "新装", "residential",
          -8, 1, MANAGERS[2])
    candidates = [a for a in accounts[5:] if a.status == "active"]
    for i in range(40):
        account = rng.choice(candidates)
        business = rng.choices(tuple(STAGES), (30, 20, 20, 20, 10))[0]
        kind = "residential" if account.customer_type == "residential" else "other"
        names = STAGES[business][kind]
        submitted = -rng.randint(1, 75)
        roll = rng.random()
        if roll < 0.55 and submitted < -1:
            status, done = "in_progress", rng.randint(0, len(names) - 1)
            done = min(done, -submitted - 1)
        elif roll < 0.9 and submitted < -2:
            status, done = "completed", len(names)
        else:
            status, done = "cancelled", rng.randint(0, 1)
        if status == "cancelled":
            done += 1  # the stages reached before cancelling all carry an end time
        stages = _stage_plan(rng, business, account.customer_type, submitted,
                             done, status != "in_progress")
        rows.append(_application_row(f"YK{2026000004 + i}", account.account_number, business,
                                     account.customer_type, submitted, status, stages,
                                     rng.choice(MANAGERS), rng))
    conn.executemany("INSERT INTO applications VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def assign_customer_managers(conn: sqlite3.Connection) -> None:
    """Give the active enterprise accounts their customer manager, deterministically, unless the
    table is filled already (it also fills a database seeded before the table existed): the demo
    enterprise account gets KH01; of the others, in 户号 order, every fifth has none (served by
    the VIP queue), the rest take the managers in turn."""
    if conn.execute("SELECT 1 FROM customer_managers LIMIT 1").fetchone():
        return
    numbers = [row[0] for row in conn.execute(
        "SELECT account_number FROM accounts WHERE customer_type = 'enterprise' AND status = 'active'"
        " ORDER BY account_number")]
    rows = []
    for i, number in enumerate(n for n in numbers if n != demo.ENTERPRISE):
        if i % 5 != 4:
            rows.append((number, *CUSTOMER_MANAGERS[i % len(CUSTOMER_MANAGERS)]))
    if demo.ENTERPRISE in numbers:
        rows.append((demo.ENTERPRISE, *CUSTOMER_MANAGERS[0]))
    conn.executemany("INSERT INTO customer_managers VALUES (?, ?, ?)", rows)


def seed_if_empty(db: Database) -> bool:
    """Create the schema and, if there are no accounts yet, the reference data. True if seeded."""
    db.create_schema()
    if db.one("SELECT 1 FROM accounts LIMIT 1"):
        with db.transaction() as conn:
            assign_customer_managers(conn)
        return False
    rng = random.Random(SEED)
    accounts = _accounts(rng)
    with db.transaction() as conn:
        conn.executemany(
            "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(a.account_number, a.name, a.customer_type, a.address, a.community.district,
              a.community.street, a.community.community, a.tariff_code, a.status, a.phone,
              a.base_kwh, a.peak_percent, a.payer, a.unpaid_bills, a.credit_fen) for a in accounts])
        _halls(conn)
        _outages(conn, rng)
        _applications(conn, rng, accounts)
        assign_customer_managers(conn)
    return True
