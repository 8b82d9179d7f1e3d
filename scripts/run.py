"""Run the whole product on one machine: ``python -m scripts.run`` (what ``make run`` calls).

Starts Redis (embedded unless REDIS_URL is set), the reference backends (unless every backend URL
points elsewhere), the action server, the Rasa server with the current model and the gateway,
prints the web chat URL, and stops everything on Ctrl-C or when any process dies.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from scripts.stack import ROOT, Stack, StackError, backends_env
from scripts.train import model_path

DEFAULTS = {
    "GATEWAY_HOST": "127.0.0.1",
    "GATEWAY_PORT": "8000",
    "RASA_PORT": "5005",
    "ACTION_SERVER_PORT": "5055",
    "BACKENDS_PORT": "8100",
    "EMBEDDED_REDIS_PORT": "6390",
    "BACKENDS_DB": str(ROOT / ".run" / "backends.sqlite3"),
}
BACKEND_URL_VARIABLES = tuple(backends_env("").keys())


def setting(name: str) -> str:
    return os.environ.get(name) or DEFAULTS[name]


def main() -> None:
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
            int(setting("EMBEDDED_REDIS_PORT"))
        )
        client_env = {name: os.environ[name] for name in BACKEND_URL_VARIABLES if os.environ.get(name)}
        if len(client_env) < len(BACKEND_URL_VARIABLES):
            backends_url = stack.start_backends(
                int(setting("BACKENDS_PORT")), Path(setting("BACKENDS_DB"))
            )
            client_env = {**backends_env(backends_url), **client_env}
        action_url = stack.start_action_server(
            int(setting("ACTION_SERVER_PORT")), redis_url, client_env
        )
        rasa_url = stack.start_rasa(int(setting("RASA_PORT")), model, redis_url, action_url)
        gateway_url = stack.start_gateway(
            setting("GATEWAY_HOST"), int(setting("GATEWAY_PORT")), redis_url, rasa_url
        )
    except StackError as exc:
        stack.stop()
        sys.exit(f"could not start PowerDesk: {exc}")

    print(f"\nPowerDesk is running. Web chat: {gateway_url}/  (Ctrl-C stops everything)\n", flush=True)
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
