// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @notice One refund request of a sub-account (contracts.md A3.2).
struct Refund {
    uint index;
    uint amount;
    uint createdAt;
    bool processed;
}

/// @notice A user's sub-account with one provider (contracts.md A3.2). Only
/// `refunds[0 .. validRefundsLength)` is meaningful.
struct Account {
    address user;
    address provider;
    uint nonce;
    uint balance;
    uint pendingRefund;
    Refund[] refunds;
    string additionalInfo;
    bool acknowledged;
    uint validRefundsLength;
    uint generation;
    uint256 revokedBitmap;
}

/// @title AccountLibrary
/// @notice Refund bookkeeping on a sub-account (internal functions only, no linking).
library AccountLibrary {
    /// @dev Cancels active refunds newest-first (LIFO) for up to `amount` neuron, partially cancelling
    /// the last one touched. Returns the amount cancelled; `pendingRefund` is reduced by it.
    function cancelRefunds(Account storage account, uint amount) internal returns (uint cancelled) {
        uint remaining = amount;
        while (remaining > 0 && account.validRefundsLength > 0) {
            Refund storage last = account.refunds[account.validRefundsLength - 1];
            if (last.amount <= remaining) {
                remaining -= last.amount;
                cancelled += last.amount;
                last.amount = 0;
                account.validRefundsLength -= 1;
            } else {
                last.amount -= remaining;
                cancelled += remaining;
                remaining = 0;
            }
        }
        account.pendingRefund -= cancelled;
    }

    /// @dev Releases every refund whose lock expired; compacts the still-locked ones to the front.
    /// Returns the released amount (balance and pendingRefund updated).
    function releaseMatured(Account storage account, uint lockTime) internal returns (uint released) {
        uint kept = 0;
        uint locked = 0;
        uint n = account.validRefundsLength;
        for (uint i = 0; i < n; i++) {
            Refund storage r = account.refunds[i];
            if (block.timestamp >= r.createdAt + lockTime) {
                released += r.amount;
                r.processed = true;
            } else {
                if (kept != i) {
                    Refund storage dst = account.refunds[kept];
                    dst.amount = r.amount;
                    dst.createdAt = r.createdAt;
                    dst.processed = false;
                }
                account.refunds[kept].index = kept;
                locked += r.amount;
                kept++;
            }
        }
        account.validRefundsLength = kept;
        account.balance -= released;
        account.pendingRefund = locked;
    }
}
