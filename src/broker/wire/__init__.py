"""Wire rules shared by the user side (``serve``) and the provider side (gateway, worker).

Each module here is one pure rule (no I/O) that both sides import, so that they cannot disagree.
Import the modules by path (``from broker.wire.n import parse_n``).
"""

__all__: list[str] = []
