"""Reference accounts that always exist in the seeded data, for demos, docs and tests.

Their figures (bills, outages, applications) are relative to today, like all reference data.
"""
from __future__ import annotations

# Residential, 阶梯 + 峰谷 (RES_TIERED_TOU), pays promptly; high consumption, so the year's
# cumulative energy passes tier 1 (2760 kWh) around August: late-year bills reach tier 2.
# Lives in 江宁区东山街道百家湖社区, where a planned outage is announced for tomorrow.
# Has a 光伏并网 application in progress (DEMO_PV_APPLICATION).
RESIDENTIAL_TOU = "3201234567"
RESIDENTIAL_TOU_PHONE = "13812345678"

# Residential, 阶梯 only (RES_TIERED); the two latest bills are unpaid (the older one overdue),
# so the balance shows arrears. Lives in 江宁区秣陵街道翠屏社区 (胜太路), where a fault outage is
# ongoing right now.
OVERDUE = "3202345678"
OVERDUE_PHONE = "13923456789"

# Commercial (一般工商业 峰谷, COM_TOU), prepaid: every bill paid from its credit balance.
COMMERCIAL = "3203456789"
COMMERCIAL_PHONE = "13734567890"

# Enterprise (大工业 峰谷, ENT_TOU) with a 增容 application in progress since 12 days ago,
# stuck at 供电方案答复 (overdue against any 5-working-day commitment).
ENTERPRISE = "3204567890"
ENTERPRISE_PHONE = "15845678901"

# A closed (销户) residential account.
CLOSED = "3205678901"
CLOSED_PHONE = "18656789012"

DEMO_PV_APPLICATION = "YK2026000001"
DEMO_CAPACITY_APPLICATION = "YK2026000002"
# Residential 新装 submitted 8 days ago, still at 现场勘查 (overdue against 5 working days). Its
# 户号 is assigned at acceptance, so the billing system does not know it until the meter is fitted.
DEMO_NEW_CONNECTION_APPLICATION = "YK2026000003"
NEW_CONNECTION_ACCOUNT = "3206789012"

# A hall open around the clock (payment, invoices and tariff questions only), so taking a
# number works in a demo at any hour; 江宁区东山营业厅 is the full-service hall.
ALWAYS_OPEN_HALL = "H10"
FULL_SERVICE_HALL = "H01"
