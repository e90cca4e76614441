// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title IServing
/// @notice What every service contract registered in the LedgerManager implements
/// (contracts.md A2.3). `type(IServing).interfaceId` == 0x160841b1.
interface IServing {
    function accountExists(address user, address provider) external view returns (bool);

    function getPendingRefund(address user, address provider) external view returns (uint);

    function addAccount(address user, address provider, string memory additionalInfo) external payable;

    function depositFund(address user, address provider, uint cancelRetrievingAmount) external payable;

    function requestRefundAll(address user, address provider) external;

    function processRefund(
        address user,
        address provider
    ) external returns (uint totalAmount, uint balance, uint pendingRefund);

    function deleteAccount(address user, address provider) external;
}

/// @title ILedger
/// @notice The LedgerManager functions a service calls back (contracts.md A2.3).
interface ILedger {
    function spendFund(address user, uint amount) external;

    function depositFundFor(address recipient) external payable;
}
