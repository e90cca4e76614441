"""broker.chain: web3 connection, contract artifacts and wrappers, typed revert decoding, the
transaction sender, keys and keystore.

Submodules are imported directly (``from broker.chain.sender import TransactionSender``); this
package module stays light so that ``broker.chain.artifacts`` can be imported on its own.
"""

__all__: list[str] = []
