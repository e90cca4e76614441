"""A complete provider on the devnet: the Z-Image worker, the gateway in front of it, and the
service registered and acknowledged on chain (``provider-gateway.md`` B1, B11, B12, D10).

:func:`start_provider_stack` is used by ``0g-broker devnet up --with-provider`` (``detach=True``:
two subprocesses that outlive the caller, pids recorded in the devnet state) and in-process by tests
and the demo (``detach=False``: uvicorn threads; :attr:`ProviderStack.gateway` is the live
:class:`~broker.provider.gateway.Gateway`). Both run their servers through
:class:`~broker.stacks.servers.LocalServer`; registration and the owner's acknowledgement are
:func:`broker.provider.register.register_and_acknowledge`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Self

from eth_account import Account

from broker.config.settings import broker_home
from broker.devnet.errors import DevnetError
from broker.devnet.state import DevnetState, ProviderStackState
from broker.ports import free_port
from broker.stacks.servers import HOST, LocalServer, stop_process

__all__ = [
    "DEFAULT_PRICE_PER_IMAGE",
    "DEVNET_TEE_SIGNER_KEY",
    "PROVIDER_ACCOUNT_INDEX",
    "TINY_SERVICE_MODEL",
    "ProviderStack",
    "ProviderStackState",
    "check_worker_installed",
    "check_worker_model",
    "gateway_db_name",
    "provider_settings",
    "start_provider_stack",
]

#: 0.001 0G per image, in neuron.
DEFAULT_PRICE_PER_IMAGE = 10**15
#: The dev account used as the provider wallet by default (0 is the owner, the last one funds
#: ``fund_new_account``).
PROVIDER_ACCOUNT_INDEX = 1
#: The devnet provider's TEE signer key: the public mock key the reference gateway uses on local
#: chains (``provider-gateway.md`` B1, address ``0x325744be57db298C2652c672B32Eb12875d92D83``). Like
#: anvil's dev keys it is public, so nothing secret is stored for the devnet.
DEVNET_TEE_SIGNER_KEY = "4c0883a69102937d6231471b5dbb6204fe512961708279b7e1a8d7d7a3c2b9e3"
_HEALTH_TIMEOUT = 180.0


def check_worker_installed() -> None:
    """Pre-flight: the worker's packages (the ``[worker]`` extra: torch, diffusers) are installed,
    checked without importing them.

    Raises:
        DevnetError: one is missing (the message says how to install it).
    """
    import importlib.util

    for name in ("torch", "diffusers"):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # ValueError: a module stubbed out in sys.modules
            found = False
        if not found:
            raise DevnetError(
                f"the provider's worker needs the [worker] extra ({name} is missing): "
                "pip install '0g-broker[worker]' (or run scripts/setup)"
            )


#: On-chain model name of the devnet's tiny Z-Image stand-in: the one the seeds' requests name.
TINY_SERVICE_MODEL = "z-image"


def check_worker_model(model: str) -> str:
    """Pre-flight for ``--model`` of ``devnet up --with-provider`` and ``demo``, before anything is
    started: ``"tiny"``, an existing local folder, or a Hub id (``org/name``; fetched by the
    worker).

    Args:
        model: the model reference.

    Returns:
        ``model`` unchanged.

    Raises:
        InputError: empty, or a path (absolute, ``./``, ``../``, ``~``) that is not a folder.
    """
    from broker._exceptions import InputError

    text = (model or "").strip()
    if not text:
        raise InputError(
            "the worker model is empty: pass 'tiny', a local Z-Image folder or a Hub id"
        )
    if text == "tiny":
        return model
    path = Path(text).expanduser()
    looks_local = text.startswith(("/", "./", "../", "~")) or path.exists()
    if looks_local and not path.is_dir():
        raise InputError(
            f"model folder {text} does not exist (or is not a folder); pass 'tiny', "
            "a local Z-Image folder or a Hub id"
        )
    return model


def gateway_db_name(state: DevnetState) -> str:
    """The gateway database file of a devnet stack, keyed by the devnet instance:
    ``gateway-<chain_tag>.db`` (chain id, LedgerManager address and genesis hash, see
    :func:`broker.config.chain_state.chain_tag`), so a new devnet never inherits an old one's
    unsettled fees (every devnet has chain id 31337 and the same contract addresses)."""
    from web3 import Web3

    from broker.config.chain_state import chain_tag, local_chain_identity

    w3 = Web3(Web3.HTTPProvider(state.rpc_url, request_kwargs={"timeout": 10}))
    tag = chain_tag("devnet", state.chain_id, state.ledger_address, local_chain_identity(w3))
    return f"gateway-{tag}.db"


def provider_settings(
    state: DevnetState,
    *,
    provider_key: str,
    home: Path,
    model: str,
    gateway_port: int,
    worker_url: str,
    price_per_image: int,
    chat_backend_url: str | None = None,
    db_name: str = "gateway.db",
):
    """The :class:`~broker.provider.settings.ProviderSettings` of a devnet stack.

    Text-to-image service at ``price_per_image`` neuron per image, backend ``<worker_url>/v1``,
    SQLite database ``home/db_name`` (:func:`gateway_db_name` for a devnet instance); never a
    dstack socket (devnet). The TEE signer is :data:`DEVNET_TEE_SIGNER_KEY`, the reference's public
    mock key for local chains.
    """
    from broker.provider.settings import ProviderSettings

    return ProviderSettings(
        network="devnet",
        rpc_url=state.rpc_url,
        inference_address=state.inference_address,
        private_key=provider_key,
        tee_signer_key=DEVNET_TEE_SIGNER_KEY,
        dstack_socket=home / "no-dstack.sock",
        service_type="text-to-image",
        model=model,
        input_price=0,
        output_price=price_per_image,
        serving_url=f"http://127.0.0.1:{gateway_port}",
        target_url=worker_url + "/v1",
        openai_backend_url=chat_backend_url,
        db_url=f"sqlite:///{home / db_name}",
        port=gateway_port,
        host="127.0.0.1",
    )


class ProviderStack:
    """A running devnet provider (worker + gateway), registered and acknowledged on chain.

    Attributes:
        gateway_url, worker_url: ``http://127.0.0.1:<port>`` (users call
            ``<gateway_url>/v1/proxy``).
        provider_address: the provider wallet; service: the on-chain
            :class:`~broker.chain.contracts.Service` after acknowledgement.
        settings: the gateway's :class:`~broker.provider.settings.ProviderSettings` (holds the key;
            never printed). info: :class:`ProviderStackState` (recordable, no secrets).
        gateway: the in-process :class:`~broker.provider.gateway.Gateway` (None when detached).
        detached: whether the servers are subprocesses that outlive this object.

    Use as a context manager or call :meth:`stop`. A detached stack is stopped only by :meth:`stop`
    (or ``devnet down``), not by leaving the ``with`` block.
    """

    def __init__(
        self,
        info: ProviderStackState,
        settings: Any,
        service: Any,
        *,
        gateway: Any = None,
        servers: list[LocalServer] | None = None,
        detached: bool = False,
    ) -> None:
        self.info = info
        self.settings = settings
        self.service = service
        self.gateway = gateway
        self.detached = detached
        self._servers = servers or []

    @property
    def worker_app(self) -> Any:
        """The in-process worker's ASGI app (its ``state.image_service`` is the running image
        service), or ``None`` for a detached stack."""
        apps = [s.app for s in self._servers if s.name == "worker"]
        return apps[0] if apps else None

    gateway_url = property(lambda self: self.info.gateway_url)
    worker_url = property(lambda self: self.info.worker_url)
    provider_address = property(lambda self: self.info.address)
    tee_signer_address = property(lambda self: self.info.tee_signer_address)

    def __repr__(self) -> str:
        return (
            f"ProviderStack(provider={self.provider_address}, gateway={self.gateway_url}, "
            f"worker={self.worker_url}, detached={self.detached})"
        )

    def restart_gateway(self, *, signer: Any = None, on_sent: Any = None) -> Any:
        """Restart the in-process gateway on the same port, database and registration.

        Args:
            signer: a TEE signer to use instead of the registered one (e.g. to show that responses
                signed by a swapped key no longer verify); default the key file in ``home``.
            on_sent: settlement hook passed to :func:`~broker.provider.serve.build_gateway`.

        Returns:
            The new :class:`~broker.provider.gateway.Gateway` (also :attr:`gateway`).

        Raises:
            DevnetError: the stack is detached; ServerStartError (a DevnetError): the new gateway
            did not start or answer ``/health``.
        """
        from broker.provider.app import create_app as gateway_app
        from broker.provider.serve import build_gateway

        if self.detached or len(self._servers) < 2:
            raise DevnetError("only an in-process provider stack can restart its gateway")
        old = self.gateway
        if old is not None and old.scheduler is not None:
            with contextlib.suppress(Exception):
                old.scheduler.shutdown()
        self._servers.pop().stop()
        if old is not None:
            old.db.dispose()
        gw = build_gateway(self.settings, signer=signer, on_sent=on_sent)
        self.gateway = gw
        server = LocalServer.in_thread(gateway_app(gw), name="gateway", port=self.settings.port)
        self._servers.append(server)
        server.wait_healthy(_HEALTH_TIMEOUT)
        gw.scheduler.start()
        return gw

    def stop(self) -> None:
        """Stop the gateway (and its settlement scheduler), then the worker; no process is left."""
        for pid in (self.info.gateway_pid, self.info.worker_pid):
            if pid:
                stop_process(pid)
        gw = self.gateway
        if gw is not None and gw.scheduler is not None:
            with contextlib.suppress(Exception):  # not started / already stopped
                gw.scheduler.shutdown()
        for server in reversed(self._servers):
            server.stop()
        self._servers = []
        if gw is not None:
            gw.db.dispose()
            self.gateway = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.detached:
            self.stop()


def _register(state: DevnetState, settings: Any, tee_address: str) -> Any:
    from broker.chain.connection import connect
    from broker.chain.contracts import InferenceServingContract
    from broker.chain.sender import TransactionSender
    from broker.provider.register import register_and_acknowledge

    w3 = connect(state.rpc_url)
    wallet = Account.from_key(settings.private_key.get_secret_value())
    contract = InferenceServingContract(w3, state.inference_address, TransactionSender(w3, wallet))
    owner = Account.from_key(state.owner_key())
    return register_and_acknowledge(contract, settings, tee_address, owner=owner).service


def start_provider_stack(
    state: DevnetState,
    *,
    model: str = "tiny",
    service_model: str | None = None,
    worker_port: int = 0,
    gateway_port: int = 0,
    provider_key: str | None = None,
    price_per_image: int = DEFAULT_PRICE_PER_IMAGE,
    chat_backend_url: str | None = None,
    home: Path | None = None,
    detach: bool = False,
    health_timeout: float = _HEALTH_TIMEOUT,
) -> ProviderStack:
    """Start the worker and the gateway, register the service and have the owner acknowledge it.

    Steps: start the Z-Image worker (``model``) → derive (or reuse) the TEE signer key in ``home`` →
    ``addOrUpdateService`` from the provider wallet (stake 100 0G on first registration,
    ``additionalInfo`` JSON of B11, text-to-image at ``price_per_image``) → the devnet owner sends
    ``acknowledgeTEESignerByOwner`` (D10) → start the gateway → wait until both ``/health`` answer.

    Args:
        state: the running devnet.
        model: worker model (``"tiny"``: random weights, CPU, offline).
        service_model: the on-chain model name (what clients send as ``model``); default
            :data:`TINY_SERVICE_MODEL` (``"z-image"``, the name the 0G skill and Router examples
            use, so they work unchanged) for the tiny stand-in, else ``model``.
        worker_port, gateway_port: loopback ports (0: free ports).
        provider_key: provider wallet key (hex); default dev account ``PROVIDER_ACCOUNT_INDEX`` (1).
        price_per_image: neuron per image (the on-chain ``outputPrice``; B9 bills ``n × price``).
        chat_backend_url: an OpenAI-compatible backend (``…/v1``) for ``/chat/completions`` and
            audio routes; billing still follows the service type (text-to-image).
        home: folder for the TEE key, the gateway database and logs (default
            ``$ZG_HOME/devnet/provider``).
        detach: subprocesses (``0g-broker worker serve`` / ``provider serve``) that outlive this
            process, pids and logs in :attr:`ProviderStack.info`; else in-process uvicorn threads.
        health_timeout: seconds to wait for each ``/health``.

    Returns:
        A running :class:`ProviderStack`.

    Raises:
        ServerStartError (a DevnetError): a server did not start. ContractRevertError /
            TransactionError: registration failed (e.g. the provider wallet lacks the 100 0G
            stake).
    """
    from broker.provider.tee import load_tee_signer

    if price_per_image < 0:
        raise ValueError("price_per_image must be >= 0 (neuron)")
    check_worker_model(model)
    home = Path(home or broker_home() / "devnet" / "provider")
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if provider_key is None:
        provider_key = state.accounts[PROVIDER_ACCOUNT_INDEX].private_key.get_secret_value()
    worker_port = worker_port or free_port(HOST)
    gateway_port = gateway_port or free_port(HOST)
    worker_url = f"http://{HOST}:{worker_port}"
    served = service_model or (TINY_SERVICE_MODEL if model == "tiny" else model)
    settings = provider_settings(
        state,
        provider_key=provider_key,
        home=home,
        model=served,
        gateway_port=gateway_port,
        worker_url=worker_url,
        price_per_image=price_per_image,
        chat_backend_url=chat_backend_url,
        db_name=gateway_db_name(state),
    )
    provider = Account.from_key(provider_key).address
    signer = load_tee_signer(settings)
    info = ProviderStackState(
        address=provider,
        tee_signer_address=signer.address,
        model=model,
        gateway_url=settings.serving_url,
        worker_url=worker_url,
        price_per_image=price_per_image,
        home=home,
    )
    if detach:
        return _start_detached(state, settings, signer.address, info, health_timeout)
    return _start_in_process(state, settings, signer, info, health_timeout)


def _start_in_process(state, settings, signer, info, health_timeout) -> ProviderStack:
    from broker.provider.app import create_app as gateway_app
    from broker.provider.serve import build_gateway
    from broker.worker.app import create_app as worker_app
    from broker.worker.settings import WorkerSettings

    port = int(info.worker_url.rsplit(":", 1)[1])
    servers: list[LocalServer] = []
    gw = None
    try:
        worker = worker_app(WorkerSettings(model=info.model, port=port, idle_unload_seconds=0))
        servers.append(LocalServer.in_thread(worker, name="worker", port=port))
        servers[-1].wait_healthy(health_timeout)
        service = _register(state, settings, signer.address)
        gw = build_gateway(settings, signer=signer)
        servers.append(LocalServer.in_thread(gateway_app(gw), name="gateway", port=settings.port))
        servers[-1].wait_healthy(health_timeout)
        gw.scheduler.start()
    except BaseException:
        ProviderStack(info, settings, None, gateway=gw, servers=servers).stop()
        raise
    return ProviderStack(info, settings, service, gateway=gw, servers=servers)


#: The gateway settings a detached gateway reads from ``ZG_PROVIDER_*`` variables (the two keys
#: are added apart: secrets never go on a command line).
_GATEWAY_ENV_FIELDS = (
    "network",
    "rpc_url",
    "inference_address",
    "dstack_socket",
    "service_type",
    "model",
    "input_price",
    "output_price",
    "serving_url",
    "target_url",
    "openai_backend_url",
    "db_url",
)


def gateway_env(env: dict[str, str], settings: Any) -> dict[str, str]:
    """The environment of a gateway process (``0g-broker provider serve``) for ``settings``:
    ``env`` plus the ``ZG_PROVIDER_*`` variables it reads, the two keys included (secrets travel
    in the environment, never on a command line).

    Args:
        env: the base environment (not changed). settings: the gateway's ``ProviderSettings``.

    Returns:
        A new environment dict.
    """
    genv = dict(env)
    for name in _GATEWAY_ENV_FIELDS:
        value = getattr(settings, name)
        if value is not None:
            genv[f"ZG_PROVIDER_{name.upper()}"] = str(value)
    genv["ZG_PROVIDER_PRIVATE_KEY"] = settings.private_key.get_secret_value()
    genv["ZG_PROVIDER_TEE_SIGNER_KEY"] = settings.tee_signer_key.get_secret_value()
    return genv


def _start_detached(state, settings, tee_address, info, health_timeout) -> ProviderStack:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZG_PROVIDER_", "ZG_WORKER_"))}
    env["PYTHONUNBUFFERED"] = "1"
    logs = info.home / "logs"
    worker_port = int(info.worker_url.rsplit(":", 1)[1])
    worker_args = ["worker", "serve", "--model", info.model, "--port", str(worker_port)]
    worker = LocalServer.in_process(
        [*worker_args, "--host", HOST, "--idle-unload", "0"],
        name="worker",
        port=worker_port,
        env=env,
        log=logs / "worker.log",
    )
    info = info.model_copy(update={"worker_pid": worker.pid, "worker_log": worker.log})
    try:
        worker.wait_healthy(health_timeout)
        service = _register(state, settings, tee_address)
        gateway = LocalServer.in_process(
            ["provider", "serve", "--port", str(settings.port), "--host", HOST],
            name="gateway",
            port=settings.port,
            env=gateway_env(env, settings),
            log=logs / "gateway.log",
        )
        info = info.model_copy(update={"gateway_pid": gateway.pid, "gateway_log": gateway.log})
        gateway.wait_healthy(health_timeout)
    except BaseException:
        for pid in info.pids():
            stop_process(pid)
        raise
    return ProviderStack(info, settings, service, detached=True)
