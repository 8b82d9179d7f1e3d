"""Reference backend services (billing, outage, queue, tickets, applications) on SQLite.

Run with ``python -m backends --host 127.0.0.1 --port 8100 --db .run/backends.sqlite3``; the
contract is ``backends/openapi.yaml`` (also served at ``/openapi.yaml``).
"""
