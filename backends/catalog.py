"""Business types handled at the halls (营业厅) and online, with queue parameters."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

APP = "网上国网App"
WECHAT = "国网江苏电力微信公众号"
ALIPAY = "支付宝生活缴费"


@dataclass(frozen=True)
class BusinessType:
    code: str
    name: str
    prefix: str                 # ticket number letter at the halls
    avg_service_minutes: int
    windows: int                # counters serving this line in parallel
    online_channels: tuple[str, ...]
    hall_only_reason: Optional[str]

    @property
    def online(self) -> bool:
        return bool(self.online_channels)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "online": self.online,
                "online_channels": list(self.online_channels),
                "hall_only_reason": self.hall_only_reason}


BUSINESS_TYPES: tuple[BusinessType, ...] = (
    BusinessType("payment", "缴费", "A", 3, 2, (APP, WECHAT, ALIPAY), None),
    BusinessType("transfer", "过户", "B", 12, 1, (APP,), None),
    BusinessType("new_connection", "新装", "C", 20, 1, (APP,), None),
    BusinessType("capacity_increase", "增容", "D", 25, 1, (APP,), None),
    BusinessType("account_closure", "销户", "E", 15, 1, (),
                 "销户需核对身份证明原件、结清电费并办理退费，请本人携带有效证件到营业厅办理。"),
    BusinessType("pv_grid", "光伏并网", "F", 25, 1, (APP,), None),
    BusinessType("rename", "更名", "G", 10, 1, (APP,), None),
    BusinessType("invoice", "发票打印", "H", 3, 1, (APP, WECHAT), None),
    BusinessType("tariff_consult", "电价咨询", "J", 6, 1, (APP, WECHAT), None),
    BusinessType("fault_repair", "故障报修", "K", 8, 1, (APP, WECHAT), None),
)

BY_CODE: dict[str, BusinessType] = {b.code: b for b in BUSINESS_TYPES}
BY_PREFIX: dict[str, BusinessType] = {b.prefix: b for b in BUSINESS_TYPES}
