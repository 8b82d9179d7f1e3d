"""PowerDesk's omnichannel gateway: web chat (socket.io), WeChat and SMS in front of Rasa.

``python -m channels`` starts it from environment variables (see :mod:`channels.config`);
:func:`channels.app.create_app` builds the aiohttp application.
"""
