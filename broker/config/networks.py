"""Network presets: chain ids, RPC URLs and contract addresses.

Source: ``user-broker.md`` §1.1–§1.2 and ``contracts.md`` A5. The devnet preset has no fixed RPC URL
or addresses of its own: they are read from the devnet state file written by ``0g-broker devnet up``
(see :mod:`broker.devnet.state`). Our devnet deploys from anvil's first account in the nonce order
of ``contracts.md`` A4, so its addresses equal the SDK's built-in ``hardhat`` preset and the
unmodified TypeScript SDK auto-detects it.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker._exceptions import ConfigError

__all__ = [
    "DEVNET",
    "HARDHAT",
    "MAINNET",
    "PRESETS",
    "TESTNET",
    "TESTNET_DEV",
    "NetworkPreset",
    "get_preset",
    "preset_for_chain_id",
]


@dataclass(frozen=True)
class NetworkPreset:
    """A named network.

    Attributes:
        name: preset name (``mainnet``, ``testnet``, ``testnet-dev``, ``hardhat``, ``devnet``).
        chain_id: EIP-155 chain id.
        rpc_url: default JSON-RPC URL, or ``None`` when it comes from elsewhere (devnet state).
        ledger_address: LedgerManager proxy address (checksummed), or ``None``.
        inference_address: InferenceServing proxy address (checksummed), or ``None``.
        fine_tuning_address: FineTuningServing proxy address, or ``None`` (unused by this port).
        status_api: the compute status API used for provider details, or ``None``.
    """

    name: str
    chain_id: int
    rpc_url: str | None
    ledger_address: str | None
    inference_address: str | None
    fine_tuning_address: str | None = None
    status_api: str | None = None


MAINNET = NetworkPreset(
    name="mainnet",
    chain_id=16661,
    rpc_url="https://evmrpc.0g.ai",
    ledger_address="0x2dE54c845Cd948B72D2e32e39586fe89607074E3",
    inference_address="0x47340d900bdFec2BD393c626E12ea0656F938d84",
    fine_tuning_address="0x4e3474095518883744ddf135b7E0A23301c7F9c0",
    status_api="https://compute-status.0g.ai",
)

TESTNET = NetworkPreset(
    name="testnet",
    chain_id=16602,
    rpc_url="https://evmrpc-testnet.0g.ai",
    ledger_address="0xE70830508dAc0A97e6c087c75f402f9Be669E406",
    inference_address="0xa79F4c8311FF93C06b8CfB403690cc987c93F91E",
    fine_tuning_address="0xC6C075D8039763C8f1EbE580be5ADdf2fd6941bA",
    status_api="https://compute-status-testnet.0g.ai",
)

TESTNET_DEV = NetworkPreset(
    name="testnet-dev",
    chain_id=16602,
    rpc_url="https://evmrpc-testnet.0g.ai",
    ledger_address="0x815B93ab4Ba4BDF530dbF1552649a3c534F8BbF7",
    inference_address="0x41bD7Ac5c19000A974D5c192bcd5FB67b56C85c5",
    fine_tuning_address="0x4e4158DF35CfdC0ac63264D3E112F5B8E9a5c569",
    status_api="https://compute-status-testnet.0g.ai",
)

HARDHAT = NetworkPreset(
    name="hardhat",
    chain_id=31337,
    rpc_url="http://127.0.0.1:8545",
    ledger_address="0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
    inference_address="0x0165878A594ca255338adfa4d48449f69242Eb8F",
    fine_tuning_address="0xA51c1fc2f0D1a1b8494Ed1FE312d7C3a78Ed91C0",
)

# The devnet's RPC URL and addresses are resolved from the devnet state file at run time.
DEVNET = NetworkPreset(
    name="devnet",
    chain_id=31337,
    rpc_url=None,
    ledger_address=None,
    inference_address=None,
)

PRESETS: dict[str, NetworkPreset] = {
    p.name: p for p in (MAINNET, TESTNET, TESTNET_DEV, HARDHAT, DEVNET)
}


def get_preset(name: str) -> NetworkPreset:
    """Return the preset called ``name`` (case-insensitive).

    Raises:
        ConfigError: ``name`` is not one of :data:`PRESETS`.
    """
    try:
        return PRESETS[name.strip().lower()]
    except KeyError:
        raise ConfigError(
            f"unknown network {name!r}; expected one of: {', '.join(PRESETS)}"
        ) from None


def preset_for_chain_id(chain_id: int, *, dev_mode: bool = False) -> NetworkPreset:
    """Pick a preset from a chain id as the SDK does (``user-broker.md`` §1.3).

    16661 → mainnet, 16602 → testnet (testnet-dev when ``dev_mode``), 31337 → hardhat.

    Raises:
        ConfigError: any other chain id (the SDK silently falls back to testnet; we refuse).
    """
    if chain_id == MAINNET.chain_id:
        return MAINNET
    if chain_id == TESTNET.chain_id:
        return TESTNET_DEV if dev_mode else TESTNET
    if chain_id == HARDHAT.chain_id:
        return HARDHAT
    raise ConfigError(f"unknown chain id {chain_id}; pass contract addresses explicitly")
