"""Runs broadcast campaigns end to end, every part in its own process, for the exactly-once
tests (``tests/channels/broadcast/test_exactly_once.py``) and the benchmark
(``bench/broadcast_bench.py``).

:class:`Harness` starts an embedded Redis (``scripts.stack.Stack``), the providers' loopback fakes
with their counters (``fakes.broadcast_fakes``: the WeChat API in one process, the SMS provider
in another), and, per audience, the reference backends on a freshly seeded SQLite file
(``bench.broadcast_data``). Workers are the operators' CLI, ``python -m channels.broadcast run
outage --outage-id <id>``, started as subprocesses with the gateway's environment pointed at
the fakes, rate limits and quiet hours off; :class:`Worker` can SIGKILL one and reports its peak
resident memory (``ru_maxrss`` from ``wait4``).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import yaml
from redis.asyncio import Redis

from bench.broadcast_data import OUTAGE, Customer, Outage, seed_backend, seed_redis
from scripts.stack import APP_PY, ROOT, Process, Stack, backends_env, free_port

SIGN = "国网供电"
WECHAT_TOKEN = "h8broadcast" + "0" * 8
CAMPAIGN = "outage:{outage_id}:fault"


def template_files(run_dir: Path) -> tuple[Path, Path, dict[str, Any]]:
    """The product's template files (``bot/``) with an id filled in for every kind at both
    providers and WeChat, written to ``run_dir``; plus the fakes' registry of those ids."""
    sms = yaml.safe_load((ROOT / "bot" / "sms_templates.yml").read_text(encoding="utf-8"))
    aliyun, tencent = {}, {}
    for n, (_kind, entry) in enumerate(sorted(sms["templates"].items()), 1):
        entry["aliyun"], entry["tencent"] = f"SMS_9{n:08d}", str(900000 + n)
        aliyun[entry["aliyun"]] = list(entry.get("params") or [])
        tencent[entry["tencent"]] = len(entry.get("params") or [])
    wechat = yaml.safe_load((ROOT / "bot" / "wechat_templates.yml").read_text(encoding="utf-8"))
    for kind, entry in wechat["templates"].items():
        entry["template_id"] = f"TPL-{kind}"
    sms_path, wechat_path = run_dir / "sms_templates.yml", run_dir / "wechat_templates.yml"
    sms_path.write_text(yaml.safe_dump(sms, allow_unicode=True), encoding="utf-8")
    wechat_path.write_text(yaml.safe_dump(wechat, allow_unicode=True), encoding="utf-8")
    registry = {"aliyun_templates": aliyun, "tencent_templates": tencent, "sign_name": SIGN,
                "wechat_template_ids": [e["template_id"] for e in wechat["templates"].values()]}
    return sms_path, wechat_path, registry


@dataclass
class FakesProcess:
    """One ``fakes.broadcast_fakes`` process (some of the fakes) and its control URL."""

    popen: subprocess.Popen
    info: dict[str, str]

    @classmethod
    def start(cls, config: dict[str, Any], log: IO[bytes]) -> "FakesProcess":
        popen = subprocess.Popen(
            [str(APP_PY), "-m", "fakes.broadcast_fakes", "--config", json.dumps(config)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        line = popen.stdout.readline()
        if not line:
            popen.wait(5)
            raise RuntimeError(f"fakes process exited with {popen.returncode}")
        return cls(popen, json.loads(line))

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.stdin.close()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


@dataclass
class Worker:
    """A broadcast CLI subprocess (its own process group)."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    started: float = field(default_factory=time.monotonic)
    returncode: int | None = None
    maxrss_kb: int = 0         # ru_maxrss: counts the harness's own pages copied at fork, too
    peak_rss_kb: int = 0       # VmHWM of the program itself (after exec), sampled by alive()
    cpu_seconds: float = 0.0
    ended: float | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        """Still running (checked without reaping it: :meth:`wait` reaps, for its rusage).
        Each call also samples the peak resident size (:attr:`peak_rss_kb`)."""
        if self.returncode is not None:
            return False
        try:
            running = os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False
        if running:
            self.peak_rss_kb = max(self.peak_rss_kb, vm_hwm_kb(self.popen.pid))
        return running

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (no cleanup runs)."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _wait4(self) -> None:
        _, status, usage = os.wait4(self.popen.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        self.popen.returncode = self.returncode
        self.maxrss_kb = usage.ru_maxrss
        self.cpu_seconds = usage.ru_utime + usage.ru_stime
        self.ended = time.monotonic()

    async def wait(self, timeout: float) -> int:
        """Wait for the exit (killing it after ``timeout`` seconds); returns the exit code."""
        if self.returncode is None:
            task = asyncio.ensure_future(asyncio.to_thread(self._wait4))
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except asyncio.TimeoutError:
                self.kill()
                await task
                raise RuntimeError(f"{self.name} still running after {timeout:.0f}s; killed\n"
                                   f"{self.log_tail()}") from None
        return self.returncode

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Harness:
    """Redis, the fakes and the backends of broadcast runs (see the module docstring).

    ``async with Harness(run_dir) as h``: Redis and the fakes start; ``await h.prepare(audience)``
    flushes Redis, seeds it and a new backends database and (re)starts the backends; then
    ``h.start_worker()`` / ``h.counts()`` / ``h.cli(...)``."""

    def __init__(self, run_dir: Path, sms_provider: str = "aliyun",
                 extra_env: dict[str, str] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.sms_provider = sms_provider
        self.extra_env = dict(extra_env or {})
        self.stack = Stack(run_dir=self.run_dir, log_dir=self.run_dir / "logs")
        self.redis_url = ""
        self.backends_url = ""
        self.redis: Redis | None = None
        self.fakes: dict[str, FakesProcess] = {}
        self._backends: Process | None = None
        self._gateway: Process | None = None
        self._rasa: Any = None
        self.gateway_url = ""
        self._session: aiohttp.ClientSession | None = None
        self._fake_logs: list[IO[bytes]] = []
        self.workers: list[Worker] = []
        self._generation = 0

    async def __aenter__(self) -> "Harness":
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self.redis_url = await asyncio.to_thread(self.stack.start_embedded_redis, free_port())
        self.redis = Redis.from_url(self.redis_url)
        self.sms_templates, self.wechat_templates, self.registry = template_files(self.run_dir)
        await self.restart_fakes()
        self._session = aiohttp.ClientSession()

    async def restart_fakes(self) -> None:
        """Fresh fakes (counters at zero): the WeChat API and the SMS provider, one process each."""
        for fakes in self.fakes.values():
            await asyncio.to_thread(fakes.stop)
        self.fakes.clear()
        for name in ("wechat", self.sms_provider):
            log = open(self.stack.log_dir / f"fakes-{name}.log", "ab")
            self._fake_logs.append(log)
            self.fakes[name] = await asyncio.to_thread(
                FakesProcess.start, {**self.registry, "only": [name]}, log)

    async def close(self) -> None:
        for worker in self.workers:
            if worker.alive():
                worker.kill()
                await worker.wait(30)
        if self._session is not None:
            await self._session.close()
        if self.redis is not None:
            await self.redis.aclose()
        for fakes in self.fakes.values():
            await asyncio.to_thread(fakes.stop)
        await asyncio.to_thread(self.stack.stop)
        if self._rasa is not None:
            await self._rasa.close()
        for log in self._fake_logs:
            log.close()

    # -- audience ---------------------------------------------------------------------------

    async def prepare(self, audience: Sequence[Customer], outage: Outage = OUTAGE,
                      fresh_fakes: bool = True) -> dict[str, float]:
        """A clean slate for ``audience``: Redis flushed and seeded, a new backends database
        (and process), fresh fakes. Returns the seconds each step took."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        if self._backends is not None:
            await asyncio.to_thread(self._backends.stop)
            self.stack.processes.remove(self._backends)
            self._backends = None
        await self.redis.flushall(asynchronous=True)  # freed in the background: a million keys
        await seed_redis(self.redis, audience)
        timings["redis"] = time.perf_counter() - started
        self._generation += 1
        db_path = self.run_dir / f"backends-{self._generation}.sqlite3"
        started = time.perf_counter()
        await asyncio.to_thread(seed_backend, db_path, audience, outage)
        timings["sqlite"] = time.perf_counter() - started
        started = time.perf_counter()
        self.backends_url = await asyncio.to_thread(self.stack.start_backends, free_port(), db_path)
        self._backends = self.stack.processes[-1]
        timings["backends"] = time.perf_counter() - started
        if fresh_fakes:
            await self.restart_fakes()
        return timings

    # -- workers ----------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The worker's environment: the gateway's variables pointed at the fakes, the
        backends and Redis; quiet hours, notice budgets, SMS per-number limits and the
        providers' token buckets off; ``extra_env`` last."""
        wechat = self.fakes["wechat"].info
        sms = self.fakes[self.sms_provider].info
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("WECHAT_", "SMS_", "ALIYUN_SMS", "TENCENT_SMS", "DELIVERY_",
                                      "BROADCAST_", "GATEWAY_"))}
        env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", REDIS_URL=self.redis_url,
                   **backends_env(self.backends_url),
                   GATEWAY_LOG_LEVEL="WARNING", DELIVERY_QUIET_HOURS="off", DELIVERY_RATE_LIMITS="off",
                   WECHAT_TOKEN=WECHAT_TOKEN, WECHAT_APP_ID=wechat["wechat_app_id"],
                   WECHAT_APP_SECRET=wechat["wechat_app_secret"],
                   WECHAT_API_BASE_URL=wechat["wechat_url"],
                   WECHAT_TEMPLATES_FILE=str(self.wechat_templates),
                   SMS_PROVIDER=self.sms_provider, SMS_SIGN_NAME=SIGN,
                   SMS_TEMPLATES_FILE=str(self.sms_templates), SMS_QUIET_HOURS="off",
                   SMS_PROACTIVE_LIMITS="1000000/min",
                   BROADCAST_RATES="wechat=off,sms=off,web=off")
        if self.sms_provider == "aliyun":
            env.update(ALIYUN_SMS_ACCESS_KEY_ID=sms["aliyun_key_id"],
                       ALIYUN_SMS_ACCESS_KEY_SECRET=sms["aliyun_key_secret"],
                       ALIYUN_SMS_ENDPOINT=sms["aliyun_url"])
        else:
            env.update(TENCENT_SMS_SECRET_ID=sms["tencent_secret_id"],
                       TENCENT_SMS_SECRET_KEY=sms["tencent_secret_key"],
                       TENCENT_SMS_SDK_APP_ID=sms["tencent_sdk_app_id"],
                       TENCENT_SMS_ENDPOINT=sms["tencent_url"])
        env.update(self.extra_env)
        return env

    def start_worker(self, args: Iterable[str] = (), name: str | None = None) -> Worker:
        """``python -m channels.broadcast <args>`` (default: run the outage campaign)."""
        args = list(args) or ["run", "outage", "--outage-id", OUTAGE.outage_id]
        return self.start_worker_command([str(APP_PY), "-m", "channels.broadcast", *args], name)

    def start_worker_command(self, command: list[str], name: str | None = None) -> Worker:
        """``command`` as a worker: the workers' environment, output to ``logs/<name>.log``."""
        name = name or f"worker-{len(self.workers) + 1}"
        log_path = self.stack.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(command, cwd=ROOT, env=self.env(), stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        worker = Worker(name, popen, log_path)
        self.workers.append(worker)
        return worker

    async def cli(self, *args: str, timeout: float = 60) -> tuple[int, str]:
        """Run the CLI to the end; returns (exit code, stdout)."""
        proc = await asyncio.create_subprocess_exec(
            str(APP_PY), "-m", "channels.broadcast", *args, cwd=ROOT, env=self.env(),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        if proc.returncode:
            sys.stderr.write(err.decode(errors="replace")[-3000:])
        return proc.returncode, out.decode(errors="replace")

    async def report(self, campaign_id: str) -> dict[str, Any]:
        """``report CAMPAIGN_ID --json``, parsed."""
        code, out = await self.cli("report", campaign_id, "--json")
        if code:
            raise RuntimeError(f"report {campaign_id} exited {code}: {out[-2000:]}")
        return json.loads(out)

    async def start_gateway(self) -> str:
        """A gateway process on the workers' environment, in front of the loopback fake of
        Rasa's REST contract (no customer talks here). Its workers drain what a broadcast
        worker leaves behind: SMS waiting in the outbox (a killed worker's leased messages, once
        the lease runs out), scheduled deliveries. Returns its base URL."""
        if self._gateway is None:
            env = {k: v for k, v in self.env().items() if k not in ("REDIS_URL", "RASA_URL")}
            env["SMS_CALLBACK_TOKEN"] = "h8-broadcast-callback-token"
            from fakes.rasa_rest import FakeRasaRest

            self._rasa = FakeRasaRest()
            await self._rasa.start()
            self.gateway_url = await asyncio.to_thread(
                self.stack.start_gateway, "127.0.0.1", free_port(), self.redis_url,
                self._rasa.url, env)
            self._gateway = self.stack.processes[-1]
        return self.gateway_url

    async def drain_sms_outbox(self, timeout: float) -> int:
        """Wait until no SMS waits in the outbox (``pd:sms:outbox``); returns how many still
        wait at the deadline."""
        from channels.sms.outbox import QUEUE_KEY

        deadline = time.monotonic() + timeout
        while (waiting := await self.redis.zcard(QUEUE_KEY)) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        return int(waiting)

    async def next_held(self, campaign_id: str) -> float | None:
        """When the campaign's earliest held recipient is due (unix time), None if none is held
        (the engine's ``pd:bc:{<id>}:held`` sorted set)."""
        first = await self.redis.zrange(f"pd:bc:{{{campaign_id}}}:held", 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def run_until_done(self, campaign_id: str, name: str, timeout: float,
                             args: Iterable[str] = ()) -> list[Worker]:
        """``run`` the campaign, and again whenever recipients it left held (a retry, a pause)
        are due, as the scheduler would, until none is open; each run must exit 0. Returns
        the workers, in order."""
        deadline = time.monotonic() + timeout
        workers: list[Worker] = []
        while True:
            worker = self.start_worker(args, name=f"{name}-{len(workers) + 1}")
            workers.append(worker)
            code = await worker.wait(max(1.0, deadline - time.monotonic()))
            if code:
                raise RuntimeError(f"{worker.name} exited {code}:\n{worker.log_tail()}")
            report = await self.report(campaign_id)
            if not report.get("open"):
                return workers
            due = await self.next_held(campaign_id)
            wait = 1.0 if due is None else max(0.2, due - time.time() + 0.2)
            if time.monotonic() + wait > deadline:
                raise RuntimeError(f"campaign {campaign_id} still has {report.get('open')} open "
                                   f"recipients after {len(workers)} runs ({report.get('held')})")
            await asyncio.sleep(wait)

    # -- counters ---------------------------------------------------------------------------

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by each long-lived process of the harness."""
        pids = {f"{name} fake": fakes.popen.pid for name, fakes in self.fakes.items()}
        pids.update({p.name: p.popen.pid for p in self.stack.processes if p.alive()})
        return {name: process_cpu_seconds(pid) for name, pid in pids.items()}


    async def _get(self, fakes: FakesProcess, path: str) -> dict[str, Any]:
        async with self._session.get(fakes.info["control_url"] + path) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def totals(self) -> int:
        """Messages the fakes accepted so far, all providers."""
        total = 0
        for fakes in self.fakes.values():
            total += sum((await self._get(fakes, "/totals")).values())
        return total

    async def requests(self) -> int:
        """Send requests the fakes answered so far."""
        total = 0
        for fakes in self.fakes.values():
            total += sum((await self._get(fakes, "/requests")).values())
        return total

    async def counts(self, audience: Sequence[Customer] = ()) -> dict[str, dict[str, int]]:
        """Messages accepted per recipient: ``{"wechat": {openid: n}, "aliyun"|"tencent":
        {phone: n}, "web": {session: n}}`` (web: notices in the sessions' outboxes)."""
        counts: dict[str, dict[str, int]] = {}
        for fakes in self.fakes.values():
            for name, per in (await self._get(fakes, "/counts")).items():
                if per:
                    counts[name] = per
        counts["web"] = await self.web_counts(audience)
        return counts

    async def web_counts(self, audience: Sequence[Customer]) -> dict[str, int]:
        """Notices waiting in the web chat outboxes of the audience's web sessions (a notice is
        a text event plus its card, the reply's ``custom`` ``{"notice": …}``: cards are counted)."""
        from channels.webchat_outbox import outbox_key

        sessions = [c.web_session for c in audience if c.web_session]
        if not sessions:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for session in sessions:
            pipe.lrange(outbox_key(session), 0, -1)
        counts = {}
        for session, events in zip(sessions, await pipe.execute()):
            notices = sum(1 for raw in events if "notice" in json.loads(raw))
            if notices:
                counts[session] = notices
        return counts

    async def wait_totals(self, at_least: int, timeout: float, worker: Worker | None = None,
                          interval: float = 0.05) -> int:
        """Poll until the fakes accepted ``at_least`` messages (or the worker ended)."""
        deadline = time.monotonic() + timeout
        total = await self.totals()
        while total < at_least and time.monotonic() < deadline:
            if worker is not None and not worker.alive():
                break
            await asyncio.sleep(interval)
            total = await self.totals()
        return total

    async def settle(self, quiet_seconds: float = 1.0, timeout: float = 60.0) -> int:
        """Wait until the fakes' totals stop moving for ``quiet_seconds``."""
        deadline = time.monotonic() + timeout
        last, since = await self.totals(), time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            now = await self.totals()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_seconds:
                break
        return last


def vm_hwm_kb(pid: int) -> int:
    """The peak resident size of ``pid``'s current program (VmHWM, kB; 0 when gone). Unlike
    ``ru_maxrss`` it starts again at exec, so a child forked from a big parent is not charged
    with the parent's pages."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (Linux /proc; 0 when gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def new_run_dir(prefix: str = "broadcast-") -> Path:
    """A fresh directory under the system's temp dir."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=prefix))


__all__ = ["CAMPAIGN", "FakesProcess", "Harness", "Worker", "new_run_dir", "template_files"]
