"""PowerDesk's Redis tracker store: events appended per conversation, the current session loaded.

Rasa's stock ``RedisTrackerStore`` keeps a conversation in one JSON blob: every turn parses the
whole history, replays it to merge, and writes all of it back, so a turn costs more the longer the
customer has talked to us (every session of the last 30 days). This store keeps, per conversation,

    <prefix>:trk:{<tag>}:events   a list: one JSON event per item, in order
    <prefix>:trk:{<tag>}:meta     a hash: n (events stored), s (index of the current session's
                                  first event: the last ``action_session_start``), id (the
                                  conversation id), c and cp (a checkpoint: an index and the
                                  events that recreate the state before it), g (how many times
                                  stored events were rewritten)

and both keys share the hash tag ``{<tag>}`` (the conversation id; a digest of it when the id has
braces), so a Lua script can touch both on a Redis Cluster. A save appends only the events that
are new since the tracker was loaded, checked against ``n`` in one Lua script (a concurrent or
rewritten history is reconciled instead); ``retrieve`` reads the current session only, as the
stock store returns it (with ``max_session_events``, a long session from its checkpoint on);
``retrieve_full_tracker`` reads everything. Both keys expire
``record_exp`` seconds after the last save (30 days in bot/endpoints.yml), like the stock store.

Each Rasa node keeps the current sessions it loaded or saved last (``keep_sessions``, the least
recently used dropped): a load then reads from Redis only the events stored since (checked in
the load script against the stored count, the rewrite counter ``g``, the session's first index
and the last event the node holds, so events another node wrote meanwhile are read, and a
rewritten or expired history is read in full), and hands out the same event objects as before,
which lets ``bot/rasa_states.py`` replay only the new events. The events a save appends are kept
as they are when their JSON reads back to an equal event (else as read back), so a load returns
what a load from Redis alone would.

A conversation still in the stock format (``<prefix>:tracker:<id>``, one blob) is moved to the
new layout the first time it is read.

Configured in bot/endpoints.yml: ``type: bot.tracker_store.PowerDeskTrackerStore``, ``url``: a
REDIS_URL (redis://, rediss://, unix://, redis+sentinel://, redis+cluster://: see
integrations/redis_url.py), ``key_prefix``, ``record_exp``, ``max_session_events`` and
``keep_sessions``.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import TrackerStore
from rasa.shared.core.constants import ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (ActionExecuted, ActiveLoop, ConversationPaused, Event, SlotSet,
                                     UserUttered, deserialise_events)
from rasa.shared.core.trackers import DialogueStateTracker

from integrations.redis_url import sync_client

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "pdrasa"
# Attribute on a tracker this store loaded or saved: where its events sit in the stored list.
MARK = "_powerdesk_store_mark"

# KEYS: events, meta. ARGV: expected n, ttl (0: none), keep, session index (-1: unchanged),
# conversation id, checkpoint index (-1: none), checkpoint (JSON), then the events to push.
# Keeps the first `keep` stored events, pushes the rest, when the stored count is still the
# expected one; returns the new count, or -1 - n. A checkpoint past `keep` is dropped.
SAVE_SCRIPT = """
local n = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
if n ~= tonumber(ARGV[1]) then return -1 - n end
local keep = tonumber(ARGV[3])
if keep == 0 then
  redis.call('DEL', KEYS[1])
elseif keep < n then
  redis.call('LTRIM', KEYS[1], 0, keep - 1)
end
if keep < n then
  redis.call('HINCRBY', KEYS[2], 'g', 1)
  if tonumber(redis.call('HGET', KEYS[2], 'c') or '0') > keep then
    redis.call('HDEL', KEYS[2], 'c', 'cp')
  end
end
if tonumber(ARGV[6]) >= 0 then
  redis.call('HSET', KEYS[2], 'c', ARGV[6], 'cp', ARGV[7])
end
local i = 8
while i <= #ARGV do
  local j = math.min(i + 999, #ARGV)
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
local total = keep + #ARGV - 7
local s = tonumber(ARGV[4])
if s >= 0 then
  redis.call('HSET', KEYS[2], 'n', total, 's', s, 'id', ARGV[5])
else
  redis.call('HSET', KEYS[2], 'n', total, 'id', ARGV[5])
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return total
"""

# KEYS: events, meta. ARGV: "session" or "full", then what the caller holds: a count (-1:
# nothing), the rewrite counter, the first index and the last event held (JSON). Returns {n,
# first index, events, checkpoint, index of the first event returned, rewrite counter} or nil;
# the checkpoint (JSON) when the session is read from it, else "". Returns only the events after
# those the caller holds when they are still the stored ones.
LOAD_SCRIPT = """
local meta = redis.call('HMGET', KEYS[2], 'n', 's', 'c', 'cp', 'g')
if not meta[1] then return nil end
local n, g = tonumber(meta[1]), meta[5] or '0'
local first, cp = 0, ''
if ARGV[1] == 'session' then
  first = tonumber(meta[2] or '0')
  if meta[3] and tonumber(meta[3]) > first then first, cp = tonumber(meta[3]), meta[4] end
end
local from, held = first, tonumber(ARGV[2] or '-1')
if held > first and held <= n and ARGV[3] == g and tonumber(ARGV[4]) == first
   and redis.call('LINDEX', KEYS[1], held - 1) == ARGV[5] then
  from = held
end
return {n, first, redis.call('LRANGE', KEYS[1], from, -1), cp, from, g}
"""
# What a node holds of a conversation's current session (see PowerDeskTrackerStore._kept).
DEFAULT_KEEP_SESSIONS = 1000


@dataclass
class _Mark:
    """A tracker's place in the stored list: its first ``synthetic`` events are a checkpoint
    (not stored), the next one is stored at ``base``; it held ``count`` events when the store
    last loaded or saved it, ``last`` being the last of them, and the list then held ``total``
    events."""

    base: int
    count: int
    last: Optional[Event]
    total: int
    synthetic: int = 0

    @property
    def end(self) -> int:
        """The stored index after the tracker's last loaded or saved event."""
        return self.base + self.count - self.synthetic


@dataclass
class _Kept:
    """A conversation's current session as this node last loaded or saved it: the checkpoint's
    events, then the stored events from index ``first`` to ``total`` (the last one as stored,
    ``last_json``), of rewrite generation ``generation``."""

    first: int
    total: int
    generation: str
    synthetic: list
    events: list
    last_json: str


def hash_tag(conversation_id: str) -> str:
    """The Cluster hash tag of a conversation: its id, or a digest when the id has braces (which
    would end the tag early) or is empty."""
    if conversation_id and "{" not in conversation_id and "}" not in conversation_id:
        return conversation_id
    return "h-" + hashlib.sha1(conversation_id.encode()).hexdigest()


def store_client(url: Optional[str], socket_timeout: float, store: str) -> Any:
    """The blocking Redis client of one of Rasa's stores of ours, from the endpoint's REDIS_URL."""
    if not url:
        raise ValueError(f"{store} needs url: a REDIS_URL in bot/endpoints.yml")
    return sync_client(str(url), socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)


def _session_index(events: Iterable[Event], offset: int) -> int:
    """The stored index of the last ``action_session_start`` among ``events`` (stored from
    ``offset`` on), or -1."""
    found = -1
    for i, event in enumerate(events):
        if isinstance(event, ActionExecuted) and event.action_name == ACTION_SESSION_START_NAME:
            found = offset + i
    return found


def _dump(event: Event) -> str:
    return json.dumps(event.as_dict(), ensure_ascii=False)


def _text(value: Any) -> str:
    """A Redis reply as text (clients may or may not decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def checkpoint_events(tracker: DialogueStateTracker, at: float) -> list[dict]:
    """Events that put a new tracker in ``tracker``'s state between turns: its slots that differ
    from their initial values, its active form, its pause (timestamped ``at``)."""
    events: list[Event] = [ActionExecuted(ACTION_LISTEN_NAME, timestamp=at)]
    events += [SlotSet(slot.name, slot.value, timestamp=at) for slot in tracker.slots.values()
               if slot.value != slot.initial_value]
    if tracker.active_loop_name:
        events.append(ActiveLoop(tracker.active_loop_name, timestamp=at))
    if tracker.is_paused():
        events.append(ConversationPaused(timestamp=at))
    return [e.as_dict() for e in events]


class PowerDeskTrackerStore(TrackerStore):
    """Rasa tracker store on Redis: append-only per conversation, current session on load."""

    def __init__(self, domain: Optional[Domain] = None, host: Optional[str] = None,
                 event_broker: Optional[EventBroker] = None, key_prefix: Optional[str] = None,
                 record_exp: Optional[float] = None, redis_client: Any = None,
                 socket_timeout: float = 5.0, max_session_events: int = 0,
                 keep_sessions: int = DEFAULT_KEEP_SESSIONS, **kwargs: Any) -> None:
        """``host`` is the REDIS_URL (Rasa passes the endpoint's ``url`` as ``host``);
        ``redis_client`` replaces it with a ready client (tests). ``max_session_events`` > 0:
        a session longer than that is loaded from a checkpoint (the state between two turns)
        followed by at least the last half of that many events; 0: the whole session.
        ``keep_sessions``: current sessions kept on this node (0: none, every load reads the
        whole session)."""
        super().__init__(domain, event_broker, **kwargs)
        if redis_client is None:
            redis_client = store_client(host, socket_timeout, "PowerDeskTrackerStore")
        self.red = redis_client
        self.prefix = str(key_prefix or DEFAULT_PREFIX)
        self.max_session_events = int(max_session_events or 0)
        self.record_exp = int(record_exp) if record_exp else 0
        self.keep_sessions = int(keep_sessions or 0)
        self._kept: "OrderedDict[str, _Kept]" = OrderedDict()
        self._save = self.red.register_script(SAVE_SCRIPT)
        self._load = self.red.register_script(LOAD_SCRIPT)

    # -- keys ---------------------------------------------------------------------------------

    def keys_of(self, conversation_id: str) -> tuple[str, str]:
        """The events list and meta hash of a conversation (one hash slot)."""
        base = f"{self.prefix}:trk:{{{hash_tag(conversation_id)}}}"
        return f"{base}:events", f"{base}:meta"

    def legacy_key(self, conversation_id: str) -> str:
        """Where Rasa's stock RedisTrackerStore keeps the conversation (same key prefix)."""
        return f"{self.prefix}:tracker:{conversation_id}"

    # -- reading ------------------------------------------------------------------------------

    async def retrieve(self, sender_id: str) -> Optional[DialogueStateTracker]:
        """The conversation's current session (from its last ``action_session_start``)."""
        return self._retrieve(sender_id, "session")

    async def retrieve_full_tracker(self, conversation_id: str) -> Optional[DialogueStateTracker]:
        """Every stored event of the conversation, across sessions."""
        return self._retrieve(conversation_id, "full")

    async def exists(self, conversation_id: str) -> bool:
        return bool(self.red.exists(self.keys_of(conversation_id)[1], self.legacy_key(conversation_id)))

    async def keys(self) -> Iterable[str]:
        """Every stored conversation id, those still in the stock format included."""
        found = set()
        for key in self.red.scan_iter(match=f"{self.prefix}:trk:*:meta", count=1000):
            key = key.decode() if isinstance(key, bytes) else key
            tag = key[key.index("{") + 1:key.rindex("}")]
            if tag.startswith("h-"):
                cid = self.red.hget(key, "id")
                if cid is None:
                    continue
                tag = cid.decode() if isinstance(cid, bytes) else cid
            found.add(tag)
        legacy = f"{self.prefix}:tracker:"
        for key in self.red.scan_iter(match=f"{legacy}*", count=1000):
            key = key.decode() if isinstance(key, bytes) else key
            found.add(key[len(legacy):])
        return sorted(found)

    def _retrieve(self, sender_id: str, part: str) -> Optional[DialogueStateTracker]:
        kept = self._kept.pop(sender_id, None) if part == "session" else None
        held = [kept.total, kept.generation, kept.first, kept.last_json] if kept else [-1, "", -1, ""]
        loaded = self._load(keys=self.keys_of(sender_id), args=[part, *held])
        if loaded is None:
            if not self._migrate(sender_id):
                return None
            loaded = self._load(keys=self.keys_of(sender_id), args=[part, -1, "", -1, ""])
            if loaded is None:
                return None
        total, first, raw, cp, start = int(loaded[0]), int(loaded[1]), loaded[2], loaded[3], int(loaded[4])
        new = deserialise_events([json.loads(e) for e in raw])
        if kept is not None and start > first:  # the events held are still the stored ones
            synthetic, events = kept.synthetic, kept.events + new
        else:
            synthetic, events = deserialise_events(json.loads(cp)) if cp else [], new
        tracker = DialogueStateTracker.from_events(sender_id, synthetic + events, self.domain.slots,
                                                   max_event_history=self.max_event_history)
        self._mark(tracker, first, total, len(synthetic))
        if part == "session" and len(events) == total - first and events:
            last_json = _text(raw[-1]) if raw else kept.last_json
            self._keep(sender_id, _Kept(first, total, _text(loaded[5]), synthetic, events, last_json))
        return tracker

    def _keep(self, sender_id: str, kept: _Kept) -> None:
        if self.keep_sessions <= 0:
            return
        self._kept.pop(sender_id, None)
        self._kept[sender_id] = kept
        while len(self._kept) > self.keep_sessions:
            self._kept.popitem(last=False)

    def _kept_after_save(self, sender_id: str, mark: _Mark, new: list[Event], dumped: list[str],
                         total: int) -> None:
        """Adds the appended events to what this node keeps of the session, when it kept the
        session the tracker came from; each event as read back from its JSON when that differs."""
        kept = self._kept.get(sender_id)
        if kept is None or kept.total != mark.total or kept.first != mark.base or total != mark.total + len(new):
            self._kept.pop(sender_id, None)
            return
        for event, text in zip(new, dumped):
            again = Event.from_parameters(json.loads(text))
            kept.events.append(event if again is not None and again.__dict__ == event.__dict__ else again)
        kept.total, kept.last_json = total, dumped[-1]
        self._kept.move_to_end(sender_id)

    def _migrate(self, sender_id: str) -> bool:
        """Moves a stock-format tracker to this layout; False when there is none."""
        legacy = self.legacy_key(sender_id)
        stored = self.red.get(legacy)
        if stored is None:
            return False
        tracker = self.deserialise_tracker(sender_id, stored)
        if tracker is None:
            return False
        events = list(tracker.events)
        written = self._write(sender_id, expected=0, keep=0, events=events,
                              session=max(_session_index(events, 0), 0))
        if written < 0:  # written meanwhile by another process: theirs wins
            logger.info("tracker of …%s already migrated by another process", sender_id[-4:])
        self.red.delete(legacy)
        logger.info("moved a stock-format tracker (%d events) to the append-only layout", len(events))
        return True

    # -- writing ------------------------------------------------------------------------------

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Appends the tracker's new events; a tracker whose history does not continue the
        stored one (rewritten, or stored meanwhile by someone else) is reconciled."""
        mark: Optional[_Mark] = tracker.__dict__.get(MARK)
        events = tracker.events
        if (mark is not None and len(events) >= mark.count
                and (mark.count == 0 or events[mark.count - 1] is mark.last)):
            new = list(itertools.islice(events, mark.count, None))
            if not new:
                return
            keep = mark.end
            session = _session_index(new, keep)
            checkpoint = self._checkpoint(tracker, mark) if session < 0 else None
            dumped = [_dump(e) for e in new]
            total = self._write(tracker.sender_id, expected=mark.total, keep=keep, events=new,
                                session=session, checkpoint=checkpoint, dumped=dumped)
            if total >= 0:
                if session < 0 and checkpoint is None and keep == mark.total:
                    self._kept_after_save(tracker.sender_id, mark, new, dumped, total)
                else:  # the next load starts elsewhere (a new session or checkpoint)
                    self._kept.pop(tracker.sender_id, None)
                self._mark(tracker, mark.base, total, mark.synthetic)
                self._publish(tracker.sender_id, new)
                return
        self._kept.pop(tracker.sender_id, None)
        self._reconcile(tracker, mark)

    def _checkpoint(self, tracker: DialogueStateTracker, mark: _Mark) -> Optional[tuple[int, str]]:
        """A new checkpoint (stored index, JSON events) when the loaded part of the session
        grows past ``max_session_events``: the state before the last user turn that keeps at
        least ``max_session_events // 2`` events after it. Replays that part of the tracker once per half
        window, so a turn's cost stays bounded."""
        limit = self.max_session_events
        if limit <= 0 or len(tracker.events) - mark.synthetic <= limit:
            return None
        events = list(tracker.events)
        latest = len(events) - limit // 2
        cut = next((i for i in range(latest, mark.synthetic, -1) if isinstance(events[i], UserUttered)), None)
        if cut is None:
            return None
        before = DialogueStateTracker.from_events(tracker.sender_id, events[:cut], self.domain.slots)
        snapshot = checkpoint_events(before, events[cut - 1].timestamp)
        return mark.base + cut - mark.synthetic, json.dumps(snapshot, ensure_ascii=False)

    def _write(self, sender_id: str, *, expected: int, keep: int, events: list[Event],
               session: int, checkpoint: Optional[tuple[int, str]] = None,
               dumped: Optional[list[str]] = None) -> int:
        """Runs the save script (``session``: the new current session's index, -1 unchanged;
        ``checkpoint``: a new one; ``dumped``: the events' JSON, when already made); the new
        stored count, or negative when ``expected`` is stale."""
        at, snapshot = checkpoint or (-1, "")
        result = self._save(keys=self.keys_of(sender_id),
                            args=[expected, self.record_exp, keep, session, sender_id, at, snapshot,
                                  *(dumped if dumped is not None else (_dump(e) for e in events))])
        return int(result)

    def _reconcile(self, tracker: DialogueStateTracker, mark: Optional[_Mark]) -> None:
        """The slow path: compares the tracker with every stored event. A tracker that continues
        the stored history (all of it, or from ``mark.base``) appends its tail; one that does not
        replaces the stored events from its base on (the whole history without a mark, as Rasa's
        ``PUT /conversations/<id>/tracker/events`` asks)."""
        sender_id = tracker.sender_id
        for _attempt in range(5):
            loaded = self._load(keys=self.keys_of(sender_id), args=["full"])
            total, stored = (int(loaded[0]), [json.loads(e) for e in loaded[2]]) if loaded else (0, [])
            events = list(tracker.events)[mark.synthetic if mark is not None else 0:]
            dicts = [e.as_dict() for e in events]
            bases = [mark.base] if mark is not None else []
            bases += [i for i, e in enumerate(stored) if dicts and e == dicts[0] and i not in bases]
            base = mark.base if mark is not None else 0
            keep, tail = base, events
            for candidate in bases:
                overlap = stored[candidate:candidate + len(dicts)]
                if overlap == dicts[:len(overlap)]:
                    base, keep, tail = candidate, candidate + len(overlap), events[len(overlap):]
                    break
            synthetic = mark.synthetic if mark is not None else 0
            if loaded is not None and keep == total and not tail:
                self._mark(tracker, base, total, synthetic)
                return
            keep = min(keep, total)
            session = _session_index(tail, keep)
            if session < 0:
                starts = [i for i, e in enumerate(stored[:keep]) if e.get("event") == "action"
                          and e.get("name") == ACTION_SESSION_START_NAME]
                session = starts[-1] if starts else 0
            written = self._write(sender_id, expected=total, keep=keep, events=tail, session=session)
            if written >= 0:
                if keep < total:
                    logger.info("tracker of …%s rewritten: kept %d of %d stored events, wrote %d",
                                sender_id[-4:], keep, total, len(tail))
                self._mark(tracker, base, written, synthetic)
                self._publish(sender_id, tail)
                return
        raise RuntimeError("tracker store: the stored history kept changing during a save")

    def _mark(self, tracker: DialogueStateTracker, base: int, total: int, synthetic: int = 0) -> None:
        events = tracker.events
        tracker.__dict__[MARK] = _Mark(base, len(events), events[-1] if events else None, total, synthetic)

    def _publish(self, sender_id: str, events: list[Event]) -> None:
        """Streams the written events to the event broker, if one is configured."""
        if self.event_broker is None:
            return
        for event in events:
            self.event_broker.publish({"sender_id": sender_id, **event.as_dict()})
