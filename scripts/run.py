"""Run the whole product on one machine: ``python -m scripts.run`` (what ``make run`` calls).

Starts Redis (embedded unless REDIS_URL is set), the reference backends (unless every backend URL
points elsewhere), the action server, the Rasa server with the current model, the gateway and the
broadcast scheduler (``python -m channels.broadcast scheduler``, BROADCAST_SCHEDULE),
prints the web chat and admin URLs, and stops everything on Ctrl-C or when any process dies.
RASA_SERVERS=N [1] starts N Rasa servers (RASA_PORT, RASA_PORT+1, ...) and N action servers
(ACTION_SERVER_PORT, +1, ...), each Rasa with its own action server, and gives the gateway all of
them in RASA_URL (a pool of Rasa nodes: channels/rasa_nodes.py).
Every process listens on loopback unless its ``*_HOST`` variable says otherwise; Rasa and the
action server share ``ACTION_SERVER_TOKEN`` (a random one per run when unset).
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from scripts.stack import ROOT, Stack, StackError, backends_env, local_url_host
from scripts.train import model_path

DEFAULTS = {
    "GATEWAY_HOST": "127.0.0.1",
    "GATEWAY_PORT": "8000",
    "GATEWAY_ADMIN_HOST": "127.0.0.1",
    "GATEWAY_ADMIN_PORT": "8001",
    "RASA_HOST": "127.0.0.1",
    "RASA_PORT": "5005",
    "ACTION_SERVER_HOST": "127.0.0.1",
    "ACTION_SERVER_PORT": "5055",
    "BACKENDS_HOST": "127.0.0.1",
    "BACKENDS_PORT": "8100",
    "EMBEDDED_REDIS_HOST": "127.0.0.1",
    "EMBEDDED_REDIS_PORT": "6390",
    "BACKENDS_DB": str(ROOT / ".run" / "backends.sqlite3"),
    "RASA_SERVERS": "1",
}
MAX_RASA_SERVERS = 16
BACKEND_URL_VARIABLES = tuple(backends_env("").keys())


class SettingError(ValueError):
    """A variable has a value ``make run`` cannot use."""


def setting(name: str) -> str:
    return (os.environ.get(name) or "").strip() or DEFAULTS[name]


def port_setting(name: str) -> int:
    """A TCP port from the environment: ASCII digits only (``"²".isdigit()`` is true too)."""
    raw = setting(name)
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 65535):
        raise SettingError(f"{name} must be a port number from 1 to 65535, got {raw!r}")
    return int(raw)


def rasa_servers_setting(ports: dict[str, int]) -> int:
    """RASA_SERVERS: how many Rasa (and action) servers, on consecutive ports that must exist."""
    raw = setting("RASA_SERVERS")
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_RASA_SERVERS):
        raise SettingError(f"RASA_SERVERS must be a whole number from 1 to {MAX_RASA_SERVERS}, got {raw!r}")
    count = int(raw)
    for name in ("RASA_PORT", "ACTION_SERVER_PORT"):
        if ports[name] + count - 1 > 65535:
            raise SettingError(f"{name} {ports[name]} leaves no room for {count} servers (RASA_SERVERS)")
    return count


def main() -> None:
    try:
        ports = {name: port_setting(name) for name in DEFAULTS if name.endswith("_PORT")}
        rasa_servers = rasa_servers_setting(ports)
    except SettingError as exc:
        print(f"make run configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    model = model_path()
    if not model.exists():
        sys.exit(f"no trained model for the current inputs ({model.name}): run `make model`")

    stopping = False

    def request_stop(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    stack = Stack(run_dir=ROOT / ".run")
    try:
        redis_url = os.environ.get("REDIS_URL") or stack.start_embedded_redis(
            ports["EMBEDDED_REDIS_PORT"], setting("EMBEDDED_REDIS_HOST")
        )
        client_env = {name: os.environ[name] for name in BACKEND_URL_VARIABLES if os.environ.get(name)}
        if len(client_env) < len(BACKEND_URL_VARIABLES):
            backends_url = stack.start_backends(
                ports["BACKENDS_PORT"], Path(setting("BACKENDS_DB")), setting("BACKENDS_HOST")
            )
            client_env = {**backends_env(backends_url), **client_env}
        rasa_url = ",".join(stack.start_rasa_nodes(
            rasa_servers, ports["RASA_PORT"], ports["ACTION_SERVER_PORT"], model, redis_url, client_env,
            setting("RASA_HOST"), setting("ACTION_SERVER_HOST")))
        admin_host = setting("GATEWAY_ADMIN_HOST")
        gateway_url = stack.start_gateway(
            setting("GATEWAY_HOST"), ports["GATEWAY_PORT"], redis_url, rasa_url,
            client_env,  # the console's lookups and the hand-off's callback tickets
            admin_host=admin_host, admin_port=ports["GATEWAY_ADMIN_PORT"],
        )
        stack.start_broadcast_scheduler(redis_url, client_env)
    except StackError as exc:
        stack.stop()
        sys.exit(f"could not start PowerDesk: {exc}")

    admin_url = f"http://{local_url_host(admin_host)}:{ports['GATEWAY_ADMIN_PORT']}"
    print(f"\nPowerDesk is running. Web chat: {gateway_url}/  (Ctrl-C stops everything)\n"
          f"Admin (operators only): {admin_url}/healthz  {admin_url}/metrics  "
          f"{admin_url}/admin/campaigns\n", flush=True)
    try:
        while not stopping:
            dead = stack.check_alive()
            if dead is not None:
                print(f"{dead.name} exited with {dead.popen.returncode}; stopping.", file=sys.stderr)
                break
            time.sleep(0.5)
    finally:
        stack.stop()
        print("PowerDesk stopped.", flush=True)


if __name__ == "__main__":
    main()
