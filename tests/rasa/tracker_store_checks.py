"""Scenarios of bot/tracker_store.py run under the Rasa environment against a real Redis:
``tracker_store_checks.py <redis url> <key prefix>``; prints one JSON object (the observations)
on its last line for tests/rasa/test_tracker_store.py to assert on."""
from __future__ import annotations

import asyncio
import json
import sys

import redis
from rasa.core.tracker_store import RedisTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (ActionExecuted, ActiveLoop, BotUttered, ConversationPaused,
                                     SessionStarted, SlotSet, UserUttered)
from rasa.shared.core.trackers import DialogueStateTracker
from redis.crc import key_slot

from bot.tracker_store import PowerDeskTrackerStore

DOMAIN = Domain.load("bot/domain")


def session_start(at: float) -> list:
    return [ActionExecuted("action_session_start", timestamp=at), SessionStarted(timestamp=at + 0.001),
            ActionExecuted("action_listen", timestamp=at + 0.002)]


def turn(at: float, text: str = "查一下电费") -> list:
    return [UserUttered(text, intent={"name": "query_bill", "confidence": 0.99}, timestamp=at),
            ActionExecuted("utter_ask_account_number", timestamp=at + 0.01),
            BotUttered("请告诉我您的户号", timestamp=at + 0.02),
            ActionExecuted("action_listen", timestamp=at + 0.03)]


def dicts(tracker) -> list:
    return [e.as_dict() for e in tracker.events]


def net_in(red) -> int:
    return int(red.info("stats")["total_net_input_bytes"])


def net_out(red) -> int:
    return int(red.info("stats")["total_net_output_bytes"])


async def main(url: str, prefix: str) -> dict:
    red = redis.Redis.from_url(url)
    store = PowerDeskTrackerStore(DOMAIN, host=url, key_prefix=prefix, record_exp=3600)
    stock = RedisTrackerStore(DOMAIN, host=red.connection_pool.connection_kwargs["host"],
                              port=red.connection_pool.connection_kwargs["port"], key_prefix=prefix,
                              record_exp=3600)
    out: dict = {}

    # A conversation of three sessions, saved turn by turn as Rasa's processor does.
    cid = "wechat:oABC{x}123"
    tracker = await store.get_or_create_tracker(cid, append_action_listen=False)
    at = 1_700_000_000.0
    for session in range(3):
        tracker = await store.retrieve(cid)
        tracker.update_with_events(session_start(at + session * 86400), DOMAIN)
        await store.save(tracker)
        for i in range(4):
            tracker = await store.retrieve(cid)
            tracker.update_with_events(turn(at + session * 86400 + 10 * (i + 1)), DOMAIN)
            if i == 1:
                tracker.update(SlotSet("account_number", f"10000000{session}"), DOMAIN)
            await store.save(tracker)
    full = await store.retrieve_full_tracker(cid)
    current = await store.retrieve(cid)
    reference = DialogueStateTracker.from_dict(cid, dicts(full), DOMAIN.slots)
    await stock.save(reference)  # the stock store's view of the same history
    stock_current = await stock.retrieve(cid)
    red.delete(store.legacy_key(cid))
    out["full_events"] = len(full.events)
    out["session_events"] = len(current.events)
    out["session_equals_stock"] = dicts(current) == dicts(stock_current)
    out["session_first"] = current.events[0].as_dict()["name"]
    out["session_slot"] = current.get_slot("account_number")
    out["stock_slot"] = stock_current.get_slot("account_number")
    events_key, meta_key = store.keys_of(cid)
    out["keys"] = [events_key, meta_key]
    out["slots"] = [key_slot(events_key.encode()), key_slot(meta_key.encode())]
    out["ttls"] = [red.ttl(events_key), red.ttl(meta_key)]
    out["stored_count"] = red.llen(events_key)
    out["meta"] = {k.decode(): v.decode() for k, v in red.hgetall(meta_key).items()}

    # Append-only: bytes sent to Redis per turn, early and late in one long session.
    cid2 = "web:long"
    tracker = await store.get_or_create_tracker(cid2, append_action_listen=False)
    tracker.update_with_events(session_start(at), DOMAIN)
    await store.save(tracker)
    written, read = [], []
    for i in range(300):
        before_out = net_out(red)
        tracker = await store.retrieve(cid2)
        read.append(net_out(red) - before_out)
        tracker.update_with_events(turn(at + i + 1, text=f"第{i:03d}句"), DOMAIN)
        before = net_in(red)
        await store.save(tracker)
        written.append(net_in(red) - before)
        await store.save(tracker)  # a second save of the same tracker writes nothing
    out["bytes_written_first"] = written[:20]
    out["bytes_written_last"] = written[-20:]
    out["long_count"] = red.llen(store.keys_of(cid2)[0])

    # Many earlier sessions: the current session's load does not grow with them.
    cid3 = "sms:13800001234"
    tracker = await store.get_or_create_tracker(cid3, append_action_listen=False)
    reads = []
    for session in range(120):
        tracker.update_with_events(session_start(at + session * 86400), DOMAIN)
        tracker.update_with_events(turn(at + session * 86400 + 5), DOMAIN)
        await store.save(tracker)
        before_out = net_out(red)
        loaded = await store.retrieve(cid3)
        reads.append(net_out(red) - before_out)
        tracker = loaded
    out["session_read_bytes_first"] = reads[:5]
    out["session_read_bytes_last"] = reads[-5:]
    out["many_sessions_loaded"] = len((await store.retrieve(cid3)).events)
    out["many_sessions_full"] = len((await store.retrieve_full_tracker(cid3)).events)

    # Migration from the stock format on first read.
    cid4 = "web:legacy-0001"
    legacy = DialogueStateTracker.from_events(cid4, [], DOMAIN.slots)
    for session in range(2):
        legacy.update_with_events(session_start(at + session * 86400), DOMAIN)
        legacy.update_with_events(turn(at + session * 86400 + 5), DOMAIN)
    legacy.update(SlotSet("account_number", "100000009"), DOMAIN)
    await stock.save(legacy)
    stock_view = await stock.retrieve(cid4)
    out["legacy_exists_before"] = await store.exists(cid4)
    out["legacy_listed"] = cid4 in await store.keys()
    migrated = await store.retrieve(cid4)
    out["migrated_equals_stock"] = dicts(migrated) == dicts(stock_view)
    out["migrated_full_equals"] = dicts(await store.retrieve_full_tracker(cid4)) == dicts(legacy)
    out["legacy_key_left"] = bool(red.exists(store.legacy_key(cid4)))
    out["migrated_slot"] = migrated.get_slot("account_number")
    migrated.update_with_events(turn(at + 86400 + 60), DOMAIN)
    await store.save(migrated)
    out["migrated_then_appended"] = len((await store.retrieve_full_tracker(cid4)).events) == len(legacy.events) + 4

    # Rewritten history: Rasa's PUT /conversations/<id>/tracker/events builds a fresh tracker.
    replacement = DialogueStateTracker.from_dict(cid, [e.as_dict() for e in session_start(at + 9e6)]
                                                 + [e.as_dict() for e in turn(at + 9e6 + 1, "停电了")],
                                                 DOMAIN.slots)
    await store.save(replacement)
    replaced = await store.retrieve_full_tracker(cid)
    out["replaced_full"] = dicts(replaced) == dicts(replacement)
    # A loaded tracker whose tail was rewritten (an event dropped, another added).
    tracker = await store.retrieve(cid)
    tracker.events.pop()
    tracker.update(ActionExecuted("utter_greet", timestamp=at + 9e6 + 5), DOMAIN)
    await store.save(tracker)
    out["rewound_full"] = dicts(await store.retrieve_full_tracker(cid)) == dicts(tracker)
    # Two writers: the second save sees the stored count changed, and reconciles.
    first = await store.retrieve(cid)
    second = await store.retrieve(cid)
    second.update_with_events(turn(at + 9e6 + 20, "谢谢"), DOMAIN)
    await store.save(second)
    first.update_with_events(turn(at + 9e6 + 30, "再见"), DOMAIN)
    await store.save(first)
    out["last_writer_wins"] = dicts(await store.retrieve_full_tracker(cid)) == dicts(first)
    # A tracker that extends the stored one without having been loaded by this store.
    copy = DialogueStateTracker.from_dict(cid, dicts(first), DOMAIN.slots)
    copy.update_with_events(turn(at + 9e6 + 40, "好的"), DOMAIN)
    before = net_in(red)
    await store.save(copy)
    out["unmarked_extension_ok"] = dicts(await store.retrieve_full_tracker(cid)) == dicts(copy)
    out["unmarked_extension_bytes"] = net_in(red) - before

    # A session longer than max_session_events is loaded from a checkpoint.
    windowed = PowerDeskTrackerStore(DOMAIN, host=url, key_prefix=f"{prefix}w", record_exp=3600,
                                     max_session_events=40)
    cid5 = "wechat:window"
    reference = DialogueStateTracker.from_events(cid5, session_start(at), DOMAIN.slots)
    await windowed.save(DialogueStateTracker.from_dict(cid5, dicts(reference), DOMAIN.slots))
    sizes, same_state, same_tail = [], [], []
    for i in range(60):
        tracker = await windowed.retrieve(cid5)
        new = turn(at + 10 * (i + 1), text=f"第{i}句")
        if i == 1:
            new.append(SlotSet("account_number", "100000007", timestamp=at + 10 * i + 5))
        if i == 3:
            new.append(ActiveLoop("bind_account_form", timestamp=at + 10 * i + 5))
        if i == 50:
            new.append(ConversationPaused(timestamp=at + 10 * i + 5))
        tracker.update_with_events(new, DOMAIN, override_timestamp=False)
        reference.update_with_events(new, DOMAIN, override_timestamp=False)
        await windowed.save(tracker)
        loaded = await windowed.retrieve(cid5)
        sizes.append(len(loaded.events))
        same_state.append(loaded.current_slot_values() == reference.current_slot_values()
                          and loaded.active_loop_name == reference.active_loop_name
                          and loaded.is_paused() == reference.is_paused())
        same_tail.append(dicts(loaded)[-20:] == dicts(reference)[-20:])
    out["window_sizes"] = sizes
    out["window_same_state"] = all(same_state)
    out["window_same_tail"] = all(same_tail)
    out["window_full_equals"] = dicts(await windowed.retrieve_full_tracker(cid5)) == dicts(reference)
    out["window_meta"] = {k.decode(): v.decode() for k, v in red.hgetall(windowed.keys_of(cid5)[1]).items()
                          if k != b"cp"}
    tracker = await windowed.retrieve(cid5)
    tracker.update_with_events(session_start(at + 86400), DOMAIN, override_timestamp=False)
    await windowed.save(tracker)
    reference.update_with_events(session_start(at + 86400), DOMAIN, override_timestamp=False)
    loaded = await windowed.retrieve(cid5)
    out["window_new_session"] = dicts(loaded) == dicts(reference)[-3:]

    # Kept sessions: node A keeps what it loaded and saved, node B writes in between; A's loads
    # equal those of a store that keeps nothing, and read only the events stored since.
    node_a = PowerDeskTrackerStore(DOMAIN, host=url, key_prefix=f"{prefix}k", record_exp=3600)
    node_b = PowerDeskTrackerStore(DOMAIN, host=url, key_prefix=f"{prefix}k", record_exp=3600)
    plain = PowerDeskTrackerStore(DOMAIN, host=url, key_prefix=f"{prefix}k", record_exp=3600, keep_sessions=0)
    cid6 = "web:kept"
    await node_a.save(DialogueStateTracker.from_events(cid6, session_start(at), DOMAIN.slots))
    same, reused, read_kept, read_plain = [], [], [], []
    previous = None
    for i in range(30):
        node = node_b if i % 10 == 9 else node_a
        tracker = await node.retrieve(cid6)
        tracker.update_with_events(turn(at + 10 * (i + 1), text=f"第{i}句"), DOMAIN)
        if i == 4:
            tracker.update(SlotSet("account_number", "100000005"), DOMAIN)
        await node.save(tracker)
        before_out = net_out(red)
        loaded = await node_a.retrieve(cid6)
        read_kept.append(net_out(red) - before_out)
        before_out = net_out(red)
        fresh = await plain.retrieve(cid6)
        read_plain.append(net_out(red) - before_out)
        same.append(dicts(loaded) == dicts(fresh) and loaded.current_slot_values() == fresh.current_slot_values())
        if previous is not None:
            reused.append(all(a is b for a, b in zip(previous.events, loaded.events)))
        previous = loaded
    out["kept_loads_equal"] = same
    out["kept_events_reused"] = sum(reused)
    out["kept_read_bytes_last"] = read_kept[-5:]
    out["plain_read_bytes_last"] = read_plain[-5:]
    # The conversation expires and a new one of the same length is stored: A reads it in full.
    count = len((await node_a.retrieve(cid6)).events)
    red.delete(*node_a.keys_of(cid6))
    again = DialogueStateTracker.from_events(cid6, session_start(at + 5000), DOMAIN.slots)
    while len(again.events) < count:
        again.update(BotUttered(f"新的{len(again.events)}", timestamp=at + 5000 + len(again.events)), DOMAIN)
    await node_b.save(again)
    out["kept_after_expiry"] = dicts(await node_a.retrieve(cid6)) == dicts(again)

    # B rewrites the history (same length, another last turn): A reads it in full.
    rewritten = await node_b.retrieve(cid6)
    rewritten.events.pop()
    rewritten.update(ActionExecuted("utter_greet", timestamp=at + 999), DOMAIN)
    await node_b.save(rewritten)
    out["kept_after_rewrite"] = dicts(await node_a.retrieve(cid6)) == dicts(await plain.retrieve(cid6))

    # Keys: every conversation, stock-format ones included; ids with braces get a digest tag.
    await stock.save(DialogueStateTracker.from_events("web:still-legacy", session_start(at), DOMAIN.slots))
    out["keys_listed"] = sorted(await store.keys())
    out["brace_keys"] = list(store.keys_of("web:{odd}"))
    out["plain_keys"] = list(store.keys_of("wechat:oX-9_z"))
    out["stored_keys"] = sorted(k.decode() for k in red.scan_iter(match=f"{prefix}:*"))
    out["missing"] = await store.retrieve("web:nobody") is None
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2])), ensure_ascii=False))
