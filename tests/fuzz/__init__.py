"""Fuzz tests of every inbound endpoint: ``/wechat`` (plain, compatible, safe), the four SMS
provider callbacks and the web chat's socket.io events.

Hypothesis generates the inputs; ``FUZZ_EXAMPLES`` sets the examples per endpoint (100 by
default, as in ``make test``; ``make fuzz`` runs 10,000). Runs are derandomised: the same inputs
on every machine. Each test fails on any answer of 500 or more and on any log record that
``tests.fuzz.support.is_unhandled`` flags (a traceback anywhere, an ERROR of aiohttp's request
handling, "Error handling request").
"""
