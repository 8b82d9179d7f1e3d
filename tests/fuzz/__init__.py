"""Fuzz tests of every inbound endpoint: ``/wechat`` (plain, compatible, safe), the four SMS
provider callbacks and the web chat's socket.io endpoint (events, raw packets, long-polling).

Hypothesis generates the inputs; ``FUZZ_EXAMPLES`` sets the examples per endpoint (100 by
default, as in ``make test``; ``make fuzz`` runs 10,000). Runs are derandomised: the same inputs
on every machine. A test fails on any HTTP answer of 500 or more and on any log record that
``tests.fuzz.support.is_unhandled`` flags: a traceback from any logger (our own
``log.exception`` catch-alls included), an ERROR of aiohttp's request handling, or a message
with "Error handling request" or "Traceback". Two kinds of traceback are counted apart and
reported in the terminal summary instead, because no gateway code runs in them: aiohttp's own
log of malformed HTTP it answers 400 itself (an over-long request line or header; a body that
does not decode as its Content-Encoding, read by aiohttp after the answer), and the tracebacks
python-engineio/python-socketio log for malformed packets they drop. Deliberate log lines
without a traceback (a refused request's warning) are fine.
"""
