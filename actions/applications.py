"""Application progress (业扩报装 / 新装 / 增容 / 过户 / 光伏并网 / 销户).

``action_query_application`` answers for an application number (entity, or YK… in the text) or,
with none, for every application of the bound 户号: business type, current stage and the stage
list, the customer manager, the time limit from the service commitments and whether it is
overdue.

Privacy: nothing is looked up before the conversation has a bound (verified) 户号; without one
the action starts verification (``require_binding`` from actions/account.py, pending request
``query_application``) and the rules resume the query afterwards. An application whose 户号 is
not the bound one gets the same answer as an unknown number (未查询到您名下的该申请).

Customer managers are staff acting for the utility: their name and office phone are shown in
full so the customer can call them; the customer's own 户号 is masked as everywhere.

Time limit: ``connection_working_days[<customer_type>]`` of the service commitments applies to
the connection work of 新装 and 增容 (业扩报装; State Grid's "接电时间" commitment), counted in
Chinese working days (chinese_calendar, via ``add_working_days``) from the submission time.
Other business types, and customer types without a configured figure, get no promised limit.
An application is overdue when it is still in progress after the limit, or was completed
after it.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any, Optional

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from actions.account import require_binding
from actions.clock import describe_moment, local_tz, now_local
from actions.common import BackendAction, EventList, Services, bound_account, buttons
from actions.constants import HOTLINE
from actions.entities import first_entity_value
from actions.settings import add_working_days, working_days_between
from actions.text import normalize
from actions.tickets import answer_ticket_status, find_ticket_id
from integrations.errors import NotFound
from integrations.masking import mask_account

logger = logging.getLogger(__name__)

PENDING = "query_application"
TIME_LIMITED_TYPES = ("新装", "增容")
CUSTOMER_TYPE_LABELS = {"residential": "居民", "commercial": "商业", "enterprise": "企业"}
STATUS_LABELS = {"in_progress": "办理中", "completed": "已办结", "cancelled": "已撤销"}
MAX_LISTED = 5
NOT_YOURS_TEXT = (
    "未查询到您名下的该申请。请核对申请编号（YK开头）；如果申请是用其他户号办理的，"
    f"请绑定该户号后再查询，或拨打{HOTLINE}供电服务热线。"
)

_APPLICATION_NUMBER = re.compile(r"(?<![A-Za-z0-9])(YK\d{10})(?!\d)", re.IGNORECASE)


def find_application_number(text: Optional[str]) -> Optional[str]:
    """An application number (YK + 10 digits) in the text, upper-cased."""
    match = _APPLICATION_NUMBER.search(normalize(text).replace(" ", ""))
    return match.group(1).upper() if match else None


def time_limit(application: Any, services: Services) -> Optional[tuple[int, dt.datetime]]:
    """``(working days, deadline)`` of the application, or None when no commitment covers it."""
    if application.business_type not in TIME_LIMITED_TYPES:
        return None
    days = services.settings.commitments.connection_working_days.get(application.customer_type)
    if not days:
        return None
    return days, add_working_days(application.submitted_at.astimezone(local_tz()), days)


def completed_at(application: Any) -> Optional[dt.datetime]:
    """When the last stage was completed (for a completed application)."""
    done = [s.completed_at for s in application.stages if s.completed_at is not None]
    return max(done) if done else None


def describe_application(application: Any, services: Services, now: dt.datetime) -> str:
    """Everything the owner of the application needs to know about it."""
    today = now.date()
    customer = CUSTOMER_TYPE_LABELS.get(application.customer_type, "")
    kind = f"{application.business_type}（{customer}）" if customer else application.business_type
    status = STATUS_LABELS.get(application.status, application.status)
    lines = [
        f"申请编号：{application.application_number}",
        f"业务类型：{kind}",
        f"申请时间：{describe_moment(application.submitted_at, today)}",
    ]
    if application.status == "in_progress":
        lines.append(f"办理状态：{status}，当前环节：{application.current_stage}")
    else:
        lines.append(f"办理状态：{status}")
    if application.stages:
        lines.append("办理进度：")
        for stage in application.stages:
            if stage.completed_at is not None:
                mark, when = "✅", f"{describe_moment(stage.completed_at, today)}完成"
            elif stage.started_at is not None:
                mark, when = "▶️", f"{describe_moment(stage.started_at, today)}开始，进行中"
            else:
                mark, when = "⬜", "待办理"
            lines.append(f"{mark} {stage.name}：{when}")

    limit = time_limit(application, services)
    if limit is not None and application.status != "cancelled":
        days, deadline = limit
        promise = f"按照{customer}{application.business_type}{days}个工作日内完成接电的服务承诺，"
        if application.status == "completed":
            finished = completed_at(application)
            if finished is not None and finished > deadline:
                late = working_days_between(deadline.date(), finished.date())
                lines.append(f"办理时限：{promise}应于{describe_moment(deadline, today)}前完成，"
                             f"实际超出{late}个工作日办结，给您带来不便，深表歉意。")
            else:
                lines.append(f"办理时限：{promise}已在时限内办结。")
        elif now > deadline:
            late = max(1, working_days_between(deadline.date(), today))
            lines.append(
                f"办理时限：{promise}应于{describe_moment(deadline, today)}前完成，"
                f"目前已超期{late}个工作日。非常抱歉！建议您联系下面的客户经理催办，"
                f"也可以点击“转人工”或拨打{HOTLINE}。"
            )
        else:
            left = working_days_between(today, deadline.date())
            remaining = f"，还剩{left}个工作日" if left > 0 else "，今天是最后期限"
            lines.append(f"办理时限：{promise}预计{describe_moment(deadline, today)}前完成{remaining}。")

    if application.manager is not None and application.status == "in_progress":
        lines.append(f"客户经理：{application.manager.name}，联系电话：{application.manager.phone}")
    return "\n".join(lines)


def is_overdue(application: Any, services: Services, now: dt.datetime) -> bool:
    """Whether an in-progress application is past its time limit."""
    limit = time_limit(application, services)
    return bool(limit and application.status == "in_progress" and now > limit[1])


def requested_number(tracker: Tracker) -> Optional[str]:
    """The application number asked about: in the latest message, or (when the query is resumed
    after verification) the one remembered in the slot."""
    text = tracker.latest_message.get("text") or ""
    number = find_application_number(first_entity_value(tracker, "application_number")) or (
        find_application_number(text)
    )
    if number:
        return number
    intent = (tracker.latest_message.get("intent") or {}).get("name")
    if intent != "query_application":
        return find_application_number(tracker.get_slot("application_number"))
    return None


class ActionQueryApplication(BackendAction):
    """Progress of the customer's applications (see module doc)."""

    def name(self) -> str:
        return "action_query_application"

    async def act(self, dispatcher, tracker, domain, services: Services) -> EventList:
        text = tracker.latest_message.get("text") or ""
        number = requested_number(tracker)
        ticket_id = find_ticket_id(first_entity_value(tracker, "complaint_ticket")) or find_ticket_id(text)
        done = [SlotSet("needs_binding", False)]
        if ticket_id and not number:
            # "TS… 进度": a ticket follow-up the NLU took for an application query.
            return done + await answer_ticket_status(dispatcher, tracker, services, ticket_id)

        account = await bound_account(tracker, services)
        if not account:
            events = await require_binding(dispatcher, tracker, services, PENDING, "查询业务办理进度")
            return events + [SlotSet("application_number", number)]

        now = now_local()
        if number:
            try:
                application = await services.applications.get_application(number)
            except NotFound:
                application = None
            if application is None or application.account_number != account:
                dispatcher.utter_message(
                    text=NOT_YOURS_TEXT,
                    buttons=buttons(("查询名下全部申请", "/query_application"), ("转人工", "/request_human")),
                )
                return done + [SlotSet("application_number", None)]
            dispatcher.utter_message(
                text="为您查到申请的办理情况：\n" + describe_application(application, services, now),
                buttons=_buttons([application], services, now),
            )
            return done + [SlotSet("application_number", number)]

        applications = await services.applications.applications_of(account)
        if not applications:
            dispatcher.utter_message(
                text=f"您绑定的户号{mask_account(account)}名下暂无业务申请记录。"
                     "如需办理新装、增容、过户、光伏并网等业务，可以通过网上国网App申请，或到营业厅办理。",
                buttons=buttons(("营业厅排队", "/queue_lookup")),
            )
            return done + [SlotSet("application_number", None)]
        applications.sort(
            key=lambda a: (a.status != "in_progress", -a.submitted_at.timestamp())
        )
        shown = applications[:MAX_LISTED]
        in_progress = sum(1 for a in applications if a.status == "in_progress")
        head = f"您绑定的户号{mask_account(account)}名下共有{len(applications)}笔业务申请"
        head += f"，其中{in_progress}笔正在办理" if in_progress else "，均已办结或撤销"
        head += "：" if len(applications) <= MAX_LISTED else f"，以下是最近的{MAX_LISTED}笔："
        body = "\n\n".join(describe_application(a, services, now) for a in shown)
        dispatcher.utter_message(text=f"{head}\n\n{body}", buttons=_buttons(shown, services, now))
        return done + [SlotSet("application_number", None)]


def _buttons(applications: list[Any], services: Services, now: dt.datetime) -> list[dict[str, str]]:
    if any(is_overdue(a, services, now) for a in applications):
        return buttons(("转人工催办", "/request_human"), ("我要投诉", "/complain"))
    return buttons(("营业厅排队", "/queue_lookup"), ("转人工", "/request_human"))
