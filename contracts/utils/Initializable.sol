// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title Initializable
/// @notice One-shot initialiser for contracts deployed behind a beacon proxy. ABI-compatible with the
/// 0G serving contracts' own `Initializable` (contracts.md A1): public `initialized()`, the error
/// `AlreadyInitialized()` and the event `Initialized(uint8)`.
/// @dev Storage: `initialized` and `_initializationLocked` pack into slot 0 right after Ownable's
/// `_owner` when this contract is inherited after `Ownable`.
abstract contract Initializable {
    /// @notice True once `initialize` has run on this storage (the proxy's).
    bool public initialized;
    bool private _initializationLocked;

    /// @notice `initialize` was called a second time, or on a logic contract.
    error AlreadyInitialized();

    /// @notice Emitted with version 1 after initialisation and 255 when initialisers are disabled.
    event Initialized(uint8 version);

    modifier onlyInitializeOnce() {
        if (initialized || _initializationLocked) revert AlreadyInitialized();
        initialized = true;
        _;
        emit Initialized(1);
    }

    /// @dev Called from logic-contract constructors so that only proxies can be initialised.
    function _disableInitializers() internal {
        _initializationLocked = true;
        emit Initialized(255);
    }
}
