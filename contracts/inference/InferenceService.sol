// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @notice A provider's service (contracts.md A3.2, `getService` tuple order).
struct Service {
    address provider;
    string serviceType;
    string url;
    uint inputPrice;
    uint outputPrice;
    uint updatedAt;
    string model;
    string verifiability;
    string additionalInfo;
    address teeSignerAddress;
    bool teeSignerAcknowledged;
}

/// @notice Argument of `addOrUpdateService` (contracts.md A3.2; field order differs from `Service`).
struct ServiceParams {
    string serviceType;
    string url;
    string model;
    string verifiability;
    uint inputPrice;
    uint outputPrice;
    string additionalInfo;
    address teeSignerAddress;
}

/// @title ServiceLibrary
/// @notice Helpers over `Service` records (internal functions only).
library ServiceLibrary {
    /// @dev True when a change of the service must reset `teeSignerAcknowledged` (contracts.md A3.3:
    /// serviceType, model, verifiability, teeSignerAddress or additionalInfo changed).
    function criticalFieldsChanged(Service storage s, ServiceParams calldata p) internal view returns (bool) {
        return
            keccak256(bytes(s.serviceType)) != keccak256(bytes(p.serviceType)) ||
            keccak256(bytes(s.model)) != keccak256(bytes(p.model)) ||
            keccak256(bytes(s.verifiability)) != keccak256(bytes(p.verifiability)) ||
            keccak256(bytes(s.additionalInfo)) != keccak256(bytes(p.additionalInfo)) ||
            s.teeSignerAddress != p.teeSignerAddress;
    }

    /// @dev Writes every field of `p` into `s` and stamps `updatedAt`.
    function store(Service storage s, address provider, ServiceParams calldata p) internal {
        s.provider = provider;
        s.serviceType = p.serviceType;
        s.url = p.url;
        s.model = p.model;
        s.verifiability = p.verifiability;
        s.inputPrice = p.inputPrice;
        s.outputPrice = p.outputPrice;
        s.additionalInfo = p.additionalInfo;
        s.teeSignerAddress = p.teeSignerAddress;
        s.updatedAt = block.timestamp;
    }
}
