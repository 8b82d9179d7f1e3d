"""bot/tracker_store.py with Rasa's own trackers and stock store against a real Redis: the current
session on load, the full history on demand, append-only saves, migration from the stock format,
rewritten histories and the Redis Cluster key layout (scenarios in tracker_store_checks.py, run
once under the Rasa environment)."""
from __future__ import annotations

import pytest

from channels.embedded_redis import EmbeddedRedis
from tests.rasa.rasa_env import needs_rasa_env, run_checks

PREFIX = "pdtest"

pytestmark = needs_rasa_env


def key_slot(key: str) -> int:
    """Redis Cluster's hash slot of ``key`` (CRC16/XMODEM of its hash tag, mod 16384)."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    crc = 0
    for byte in key.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % 16384


@pytest.fixture(scope="module")
def seen(tmp_path_factory) -> dict:
    """What the scenarios observed, on a private Redis (its byte counters see only them)."""
    with EmbeddedRedis(tmp_path_factory.mktemp("tracker-redis")) as server:
        return run_checks("tracker_store_checks.py", server.url, PREFIX)


def test_retrieve_loads_the_current_session_as_the_stock_store_returns_it(seen):
    assert seen["full_events"] == 60 and seen["session_events"] == 20
    assert seen["session_equals_stock"] is True
    assert seen["session_first"] == "action_session_start"
    assert seen["session_slot"] == seen["stock_slot"] == "100000002"
    assert seen["meta"]["n"] == "60" and seen["meta"]["s"] == "40"


def test_full_history_stays_retrievable_after_many_sessions(seen):
    assert seen["many_sessions_loaded"] == 7
    assert seen["many_sessions_full"] == 120 * 7


def test_a_save_writes_only_the_new_events(seen):
    first, last = seen["bytes_written_first"], seen["bytes_written_last"]
    assert seen["long_count"] == 3 + 300 * 4
    # one turn is ~900 bytes whatever came before it (the stock store writes the whole history)
    assert max(last) < 1.05 * max(first) and max(last) < 1500


def test_the_current_session_is_read_in_constant_bytes(seen):
    assert max(seen["session_read_bytes_last"]) < 1.05 * max(seen["session_read_bytes_first"])


def test_a_stock_format_tracker_is_migrated_on_first_read(seen):
    assert seen["legacy_exists_before"] is True and seen["legacy_listed"] is True
    assert seen["migrated_equals_stock"] is True and seen["migrated_full_equals"] is True
    assert seen["legacy_key_left"] is False
    assert seen["migrated_slot"] == "100000009"
    assert seen["migrated_then_appended"] is True


def test_rewritten_and_concurrent_histories_are_reconciled(seen):
    assert seen["replaced_full"] is True  # PUT .../tracker/events replaces the history
    assert seen["rewound_full"] is True  # a loaded tracker whose tail changed
    assert seen["last_writer_wins"] is True  # Rasa's lock store serialises writers anyway
    assert seen["unmarked_extension_ok"] is True
    assert seen["unmarked_extension_bytes"] < 2000


def test_keys_expire_and_share_one_cluster_hash_slot(seen):
    events, meta = seen["keys"]
    assert events.endswith(":events") and meta.endswith(":meta")
    assert seen["slots"][0] == seen["slots"][1] == key_slot(events) == key_slot(meta)
    assert 0 < seen["ttls"][0] <= 3600 and 0 < seen["ttls"][1] <= 3600
    assert seen["plain_keys"] == [f"{PREFIX}:trk:{{wechat:oX-9_z}}:events", f"{PREFIX}:trk:{{wechat:oX-9_z}}:meta"]
    brace_events, brace_meta = seen["brace_keys"]
    assert key_slot(brace_events) == key_slot(brace_meta) and "{odd}" not in brace_events
    assert seen["meta"]["id"] == "wechat:oABC{x}123"


def test_keys_lists_every_conversation_and_nothing_else_is_stored(seen):
    assert seen["keys_listed"] == ["sms:13800001234", "web:legacy-0001", "web:long", "web:still-legacy",
                                   "wechat:oABC{x}123"]
    assert seen["missing"] is True
    legacy = [k for k in seen["stored_keys"] if k.startswith(f"{PREFIX}:tracker:")]
    assert legacy == [f"{PREFIX}:tracker:web:still-legacy"]
    assert all(k.endswith((":events", ":meta")) for k in seen["stored_keys"] if k not in legacy)


def test_a_long_session_is_loaded_from_a_checkpoint_with_the_same_state(seen):
    """max_session_events=40: a session of 60 turns loads as a checkpoint (slots, active form,
    pause) and at least the last 20 events; the full history keeps every event."""
    sizes = seen["window_sizes"]
    assert max(sizes) <= 40 + 3 + 4 and min(sizes[10:]) >= 20
    assert seen["window_same_state"] is True and seen["window_same_tail"] is True
    assert seen["window_full_equals"] is True
    assert int(seen["window_meta"]["c"]) > int(seen["window_meta"]["s"])
    assert seen["window_new_session"] is True  # a new session is read from its start again


def test_a_node_reads_only_the_events_stored_since_its_last_load(seen):
    # node B writes every tenth turn; node A's loads equal a store's that keeps nothing
    assert seen["kept_loads_equal"] == [True] * 30
    assert seen["kept_events_reused"] >= 25  # the same event objects handed out again
    assert max(seen["kept_read_bytes_last"]) * 3 < min(seen["plain_read_bytes_last"])


def test_a_node_reads_a_rewritten_or_recreated_history_in_full(seen):
    assert seen["kept_after_rewrite"] is True
    assert seen["kept_after_expiry"] is True
