"""Async clients of the backend systems (billing, outage, queue, tickets, applications).

Each backend has a small Protocol interface and an HTTP implementation returning frozen
dataclasses. This package never imports Rasa and uses only the stable part of aiohttp's client
API, so both the Rasa environment (aiohttp 3.9) and the app environment (aiohttp 3.14) use it.
"""
