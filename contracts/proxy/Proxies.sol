// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

// Re-export of the OpenZeppelin 4.8.3 beacon-proxy pair used by the deployment (contracts.md A4):
// logic -> UpgradeableBeacon(logic) -> BeaconProxy(beacon, "").
import "@openzeppelin/contracts/proxy/beacon/BeaconProxy.sol";
import "@openzeppelin/contracts/proxy/beacon/UpgradeableBeacon.sol";
