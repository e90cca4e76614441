"""Every error class of 0g-broker in one place: ``from broker.errors import X``.

The categories come from :mod:`broker._exceptions`; each area's specific classes from its
``errors`` module. Contract reverts: :mod:`broker.chain.errors` generates one class per custom error
of the ABIs (``InsufficientBalanceError``...), all re-exported here via its ``__all__``.

To add an area: ``from broker.<area>.errors import *`` plus the module in ``_AREAS`` below.
"""

from broker import _exceptions
from broker._exceptions import *
from broker.asgi import errors as _asgi
from broker.asgi.errors import *
from broker.attestation import errors as _attestation
from broker.attestation.errors import *
from broker.chain import artifacts as _artifacts
from broker.chain import errors as _chain
from broker.chain.artifacts import ArtifactNotFoundError  # noqa: F401 - re-exported
from broker.chain.errors import *
from broker.devnet import errors as _devnet
from broker.devnet.errors import *
from broker.funding import errors as _funding
from broker.funding.errors import *
from broker.inference import errors as _inference
from broker.inference.errors import *
from broker.ledger import errors as _ledger
from broker.ledger.errors import *
from broker.provider import errors as _provider
from broker.provider.errors import *
from broker.proxy import errors as _proxy
from broker.proxy.errors import *
from broker.proxy.pixazo import errors as _pixazo
from broker.proxy.pixazo.errors import *
from broker.stacks import errors as _stacks
from broker.stacks.errors import *
from broker.wire import json_body as _wire_json_body
from broker.wire import n as _wire_n
from broker.wire import webhook as _wire_webhook
from broker.wire.json_body import InvalidJSONBodyError  # noqa: F401 - re-exported
from broker.wire.n import InvalidNError  # noqa: F401 - re-exported
from broker.wire.webhook import WebhookURLError  # noqa: F401 - re-exported
from broker.worker import errors as _worker
from broker.worker.errors import *

_AREAS = (
    _exceptions,
    _artifacts,
    _chain,
    _ledger,
    _devnet,
    _inference,
    _funding,
    _attestation,
    _provider,
    _proxy,
    _pixazo,
    _worker,
    _asgi,
    _stacks,
    _wire_json_body,
    _wire_n,
    _wire_webhook,
)

# Only the exception classes (the areas' __all__ also list helpers such as decode_revert).
__all__ = sorted(  # noqa: PLE0605 - computed from the areas
    {
        name
        for module in _AREAS
        for name in module.__all__
        if isinstance(getattr(module, name), type) and issubclass(getattr(module, name), Exception)
    }
)
