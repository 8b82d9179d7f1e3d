"""Broadcasts: bill reminders, arrears and low-balance notices, outage and restoration notices.

:mod:`channels.broadcast.sources` says who gets which notice (from the backends and the
customer store); the engine delivers them through :mod:`channels.delivery`.
"""
