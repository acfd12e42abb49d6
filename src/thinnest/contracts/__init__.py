"""The contracts every component shares and none owns.

- :mod:`~thinnest.contracts.values`: what a JSON value from a caller may hold (storable text,
  bounded depth), and the strict base of request bodies;
- :mod:`~thinnest.contracts.agent`: an agent's config (:class:`AgentConfig`), its providers
  and tools;
- :mod:`~thinnest.contracts.dispatch`: what the API hands the voice engine with a session;
- :mod:`~thinnest.contracts.events`: the data-channel (and WebSocket gateway) events, and the
  API's control messages to the engine;
- :mod:`~thinnest.contracts.session`: a session's status and why a call ended.

Contracts import only :mod:`thinnest.config`, :mod:`thinnest.errors` and each other; the API,
the engine, the gateway, the CLI and the bench import them, never one another (see
``docs/architecture.md``).
"""
