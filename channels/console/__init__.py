"""The agents' console: users and sessions (:mod:`.auth`, :mod:`.sessions`), the JSON API under
``/console/api/`` (:mod:`.api`, operations in :mod:`.desk`), the live WebSocket (:mod:`.live`)
and the CLI (``python -m channels.console``). Settings: :mod:`.config`."""
