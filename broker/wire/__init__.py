"""Wire rules shared by the user side (``serve``, the inference broker) and the provider side
(gateway, worker).

Pure functions, no I/O: anything both sides compute (a hash, a canonical body, a count) lives in ONE
module here so that the two sides cannot drift apart. Import the module you need by path, e.g.
``from broker.wire.n import parse_n``; each module declares its own ``__all__``.
"""

__all__: list[str] = []
