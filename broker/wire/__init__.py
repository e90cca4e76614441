"""Wire rules shared by the user side (``serve``, the inference broker) and the provider side
(gateway, worker).

Pure functions, no I/O: anything both sides compute (a hash, a canonical body, a count) lives in ONE
module here so that the two sides cannot drift apart. Import the module you need by path, e.g.
``from broker.wire.n import parse_n``; each module declares its own ``__all__``.

Modules: ``session_token`` (the ``app-sk-`` format, signing, the provider checks), ``fees`` (the fee
per service type), ``sse`` (the one SSE parser: usage, chat id, text), ``chat_id``, ``signed_text``,
``forwarded_request``, ``content_coding``, ``json_body``, ``form`` (a multipart form's text
fields), ``n``, ``job_id``, ``webhook``,
``eth_signature`` (the canonical low-s form of a signature),
``openapi``; ``errors`` (token and fee errors).
"""

__all__: list[str] = []
