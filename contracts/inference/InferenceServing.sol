// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

import "@openzeppelin/contracts/access/Ownable.sol";
import "@openzeppelin/contracts/security/ReentrancyGuard.sol";
import "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";
import "@openzeppelin/contracts/utils/introspection/ERC165.sol";
import "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import "../utils/Initializable.sol";
import "../ledger/IServing.sol";
import "./InferenceAccount.sol";
import "./InferenceService.sol";

/// @notice One provider-submitted settlement (contracts.md A3.2 `TEESettlementData`).
struct TEESettlementData {
    address user;
    address provider;
    uint totalFee;
    bytes32 requestsHash;
    uint nonce;
    bytes signature;
}

/// @notice Per-item outcome of `settleFeesWithTEE` (ABI `uint8`).
enum SettlementStatus {
    SUCCESS,
    PARTIAL,
    PROVIDER_MISMATCH,
    NO_TEE_SIGNER,
    INVALID_NONCE,
    INVALID_SIGNATURE
}

/// @title InferenceServing
/// @notice Inference sub-accounts, provider services and TEE-signed fee settlement; ABI- and
/// behaviour-compatible with the deployed 0G InferenceServing (contracts.md A3).
contract InferenceServing is Ownable, Initializable, ReentrancyGuard, IServing, ERC165 {
    using EnumerableSet for EnumerableSet.Bytes32Set;
    using AccountLibrary for Account;
    using ServiceLibrary for Service;

    uint public constant MIN_LOCKTIME = 1 hours;
    uint public constant MAX_LOCKTIME = 7 days;
    uint public constant MIN_PROVIDER_STAKE = 100 ether;
    uint private constant MAX_REFUNDS_PER_ACCOUNT = 5;
    uint private constant MAX_ADDITIONAL_INFO_LENGTH = 4096;
    uint private constant PAGE_LIMIT = 50;
    uint private constant MAX_SETTLEMENTS = 50;
    uint private constant MAX_BATCH_USERS = 500;

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant SETTLEMENT_TYPEHASH =
        keccak256("TEESettlement(bytes32 requestsHash,uint256 nonce,address provider,address user,uint256 totalFee)");
    bytes32 private constant NAME_HASH = keccak256("0G Inference Serving");
    bytes32 private constant VERSION_HASH = keccak256("1");

    /// @custom:storage-location erc7201:0g.serving.inference.v1.0
    struct InferenceServingStorage {
        uint lockTime;
        address ledgerAddress;
        mapping(bytes32 => Account) accounts;
        EnumerableSet.Bytes32Set accountKeys;
        mapping(address => EnumerableSet.Bytes32Set) providerAccountKeys;
        mapping(address => EnumerableSet.Bytes32Set) userAccountKeys;
        mapping(bytes32 => Service) services;
        EnumerableSet.Bytes32Set serviceKeys;
        mapping(address => uint) providerStake;
    }

    // keccak256(abi.encode(uint256(keccak256("0g.serving.inference.v1.0")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant STORAGE_SLOT = 0xdfd123095cdedb1cecbc229b30f7cf8745fb3d3951645ac4a8fa4c0895f89500;

    error AccountExists(address user, address provider);
    error AccountNotExists(address user, address provider);
    error AdditionalInfoTooLong();
    error BatchSizeTooLarge(uint256 size, uint256 max);
    error CallerNotLedger(address caller);
    error CannotAddStakeWhenUpdating();
    error CannotRevokeWithNonZeroBalance(address user, address provider, uint256 balance);
    error DirectDepositsDisabled();
    error InsufficientStake(uint256 provided, uint256 required);
    error InvalidAddress(address addr);
    error InvalidTEESignature(string reason);
    error LimitTooLarge(uint256 limit, uint256 max);
    error LockTimeOutOfRange(uint256 lockTime, uint256 min, uint256 max);
    error NoSettlementsProvided();
    error ProviderCannotBeUser();
    error ServiceNotExist(address provider);
    error TooManyRefunds(address user, address provider);
    error TooManySettlements(uint256 count, uint256 max);
    error TransferFailed();

    event BalanceUpdated(address indexed user, address indexed provider, uint amount, uint pendingRefund);
    event RefundRequested(address indexed user, address indexed provider, uint indexed index, uint timestamp);
    event ServiceUpdated(
        address indexed service,
        string serviceType,
        string url,
        uint inputPrice,
        uint outputPrice,
        uint updatedAt,
        string model,
        string verifiability
    );
    event ServiceRemoved(address indexed service);
    event TEESettlementResult(address indexed user, SettlementStatus status, uint256 unsettledAmount);
    event BatchBalanceUpdated(address[] users, uint256[] balances, uint256[] pendingRefunds);
    event ProviderTEESignerAcknowledged(address indexed provider, address indexed teeSignerAddress, bool acknowledged);
    event ProviderStaked(address indexed provider, uint amount);
    event ProviderStakeReturned(address indexed provider, uint amount);
    event TokenRevoked(address indexed user, address indexed provider, uint8 tokenId);
    event TokensRevoked(address indexed user, address indexed provider, uint8[] tokenIds);
    event AllTokensRevoked(address indexed user, address indexed provider, uint newGeneration);
    event LockTimeUpdated(uint256 oldLockTime, uint256 newLockTime);
    event ContractInitialized(address indexed owner, uint256 lockTime, address ledgerAddress);
    event AccountDeleted(address indexed user, address indexed provider, uint256 refundedAmount);

    constructor() {
        _disableInitializers();
    }

    function _s() private pure returns (InferenceServingStorage storage $) {
        assembly {
            $.slot := STORAGE_SLOT
        }
    }

    modifier onlyLedger() {
        if (msg.sender != _s().ledgerAddress) revert CallerNotLedger(msg.sender);
        _;
    }

    /// @notice Sets the refund lock time (seconds), the LedgerManager address and the owner.
    function initialize(uint _locktime, address _ledgerAddress, address owner) external onlyInitializeOnce {
        _checkLockTime(_locktime);
        _transferOwnership(owner);
        _s().lockTime = _locktime;
        _s().ledgerAddress = _ledgerAddress;
        emit ContractInitialized(owner, _locktime, _ledgerAddress);
    }

    receive() external payable {
        revert DirectDepositsDisabled();
    }

    function supportsInterface(bytes4 interfaceId) public view virtual override returns (bool) {
        return interfaceId == type(IServing).interfaceId || super.supportsInterface(interfaceId);
    }

    // ------------------------------------------------------------------ admin

    function lockTime() external view returns (uint) {
        return _s().lockTime;
    }

    function ledgerAddress() external view returns (address) {
        return _s().ledgerAddress;
    }

    function updateLockTime(uint _locktime) external onlyOwner {
        _checkLockTime(_locktime);
        uint old = _s().lockTime;
        _s().lockTime = _locktime;
        emit LockTimeUpdated(old, _locktime);
    }

    function acknowledgeTEESignerByOwner(address provider) external onlyOwner {
        Service storage service = _serviceOf(provider);
        service.teeSignerAcknowledged = true;
        emit ProviderTEESignerAcknowledged(provider, service.teeSignerAddress, true);
    }

    function revokeTEESignerAcknowledgement(address provider) external onlyOwner {
        Service storage service = _serviceOf(provider);
        service.teeSignerAcknowledged = false;
        emit ProviderTEESignerAcknowledged(provider, service.teeSignerAddress, false);
    }

    // ------------------------------------------------------------------ ledger-only (IServing)

    function accountExists(address user, address provider) public view returns (bool) {
        return _s().accountKeys.contains(_accountKey(user, provider));
    }

    function getPendingRefund(address user, address provider) external view returns (uint) {
        return _accountOf(user, provider).pendingRefund;
    }

    function addAccount(address user, address provider, string memory additionalInfo) external payable onlyLedger {
        _checkPair(user, provider);
        bytes32 key = _accountKey(user, provider);
        InferenceServingStorage storage $ = _s();
        if ($.accountKeys.contains(key)) revert AccountExists(user, provider);
        Account storage account = $.accounts[key];
        // nonce and generation survive a deletion (replay protection)
        account.user = user;
        account.provider = provider;
        account.balance = msg.value;
        account.pendingRefund = 0;
        account.additionalInfo = additionalInfo;
        account.acknowledged = true;
        account.validRefundsLength = 0;
        account.revokedBitmap = 0;
        $.accountKeys.add(key);
        $.providerAccountKeys[provider].add(key);
        $.userAccountKeys[user].add(key);
        emit BalanceUpdated(user, provider, msg.value, 0);
    }

    function depositFund(address user, address provider, uint cancelRetrievingAmount) external payable onlyLedger {
        _checkPair(user, provider);
        Account storage account = _accountOf(user, provider);
        account.cancelRefunds(cancelRetrievingAmount);
        account.balance += msg.value;
        if (!account.acknowledged) account.acknowledged = true;
        emit BalanceUpdated(user, provider, account.balance, account.pendingRefund);
    }

    function requestRefundAll(address user, address provider) external onlyLedger {
        Account storage account = _accountOf(user, provider);
        uint amount = account.balance - account.pendingRefund;
        if (amount > 0) {
            uint n = account.validRefundsLength;
            if (n >= MAX_REFUNDS_PER_ACCOUNT) revert TooManyRefunds(user, provider);
            Refund memory r = Refund({index: n, amount: amount, createdAt: block.timestamp, processed: false});
            if (account.refunds.length > n) {
                account.refunds[n] = r;
            } else {
                account.refunds.push(r);
            }
            account.validRefundsLength = n + 1;
            account.pendingRefund += amount;
        }
        if (account.validRefundsLength > 0) {
            emit RefundRequested(user, provider, account.validRefundsLength - 1, block.timestamp);
        }
    }

    function processRefund(
        address user,
        address provider
    ) external onlyLedger returns (uint totalAmount, uint balance, uint pendingRefund) {
        Account storage account = _accountOf(user, provider);
        totalAmount = account.releaseMatured(_s().lockTime);
        balance = account.balance;
        pendingRefund = account.pendingRefund;
        if (totalAmount > 0) {
            emit BalanceUpdated(user, provider, balance, pendingRefund);
            (bool ok, ) = payable(msg.sender).call{value: totalAmount}("");
            if (!ok) revert TransferFailed();
        }
    }

    function deleteAccount(address user, address provider) external onlyLedger {
        InferenceServingStorage storage $ = _s();
        bytes32 key = _accountKey(user, provider);
        if (!$.accountKeys.contains(key)) return;
        Account storage account = $.accounts[key];
        uint deletedBalance = account.balance;
        account.balance = 0;
        account.pendingRefund = 0;
        account.acknowledged = false;
        account.validRefundsLength = 0;
        account.revokedBitmap = 0;
        delete account.refunds;
        delete account.additionalInfo;
        $.accountKeys.remove(key);
        $.providerAccountKeys[provider].remove(key);
        $.userAccountKeys[user].remove(key);
        emit AccountDeleted(user, provider, deletedBalance);
    }

    // ------------------------------------------------------------------ user

    function acknowledgeTEESigner(address provider, bool acknowledged) external {
        Account storage account = _accountOf(msg.sender, provider);
        if (account.acknowledged && !acknowledged && account.balance != 0) {
            revert CannotRevokeWithNonZeroBalance(msg.sender, provider, account.balance);
        }
        account.acknowledged = acknowledged;
    }

    function revokeToken(address provider, uint8 tokenId) external {
        Account storage account = _accountOf(msg.sender, provider);
        account.revokedBitmap |= (uint256(1) << tokenId);
        emit TokenRevoked(msg.sender, provider, tokenId);
    }

    function revokeTokens(address provider, uint8[] memory tokenIds) external {
        Account storage account = _accountOf(msg.sender, provider);
        uint256 bitmap = account.revokedBitmap;
        for (uint i = 0; i < tokenIds.length; i++) {
            bitmap |= (uint256(1) << tokenIds[i]);
        }
        account.revokedBitmap = bitmap;
        emit TokensRevoked(msg.sender, provider, tokenIds);
    }

    function revokeAllTokens(address provider) external {
        Account storage account = _accountOf(msg.sender, provider);
        account.generation += 1;
        account.revokedBitmap = 0;
        emit AllTokensRevoked(msg.sender, provider, account.generation);
    }

    function isTokenRevoked(address user, address provider, uint8 tokenId) external view returns (bool) {
        return (_s().accounts[_accountKey(user, provider)].revokedBitmap >> tokenId) & 1 == 1;
    }

    // ------------------------------------------------------------------ provider

    function addOrUpdateService(ServiceParams calldata params) external payable {
        InferenceServingStorage storage $ = _s();
        if ($.providerStake[msg.sender] > 0) {
            if (msg.value != 0) revert CannotAddStakeWhenUpdating();
        } else {
            if (msg.value < MIN_PROVIDER_STAKE) revert InsufficientStake(msg.value, MIN_PROVIDER_STAKE);
            $.providerStake[msg.sender] = msg.value;
            emit ProviderStaked(msg.sender, msg.value);
        }
        if (bytes(params.additionalInfo).length > MAX_ADDITIONAL_INFO_LENGTH) revert AdditionalInfoTooLong();
        bytes32 key = _serviceKey(msg.sender);
        Service storage service = $.services[key];
        if ($.serviceKeys.contains(key)) {
            if (service.criticalFieldsChanged(params)) service.teeSignerAcknowledged = false;
        } else {
            service.teeSignerAcknowledged = false;
            $.serviceKeys.add(key);
        }
        service.store(msg.sender, params);
        emit ServiceUpdated(
            msg.sender,
            params.serviceType,
            params.url,
            params.inputPrice,
            params.outputPrice,
            block.timestamp,
            params.model,
            params.verifiability
        );
    }

    function removeService() external nonReentrant {
        InferenceServingStorage storage $ = _s();
        bytes32 key = _serviceKey(msg.sender);
        if (!$.serviceKeys.contains(key)) revert ServiceNotExist(msg.sender);
        delete $.services[key];
        $.serviceKeys.remove(key);
        uint stake = $.providerStake[msg.sender];
        if (stake > 0) {
            $.providerStake[msg.sender] = 0;
            emit ProviderStakeReturned(msg.sender, stake);
            emit ServiceRemoved(msg.sender);
            (bool ok, ) = payable(msg.sender).call{value: stake}("");
            if (!ok) revert TransferFailed();
        } else {
            emit ServiceRemoved(msg.sender);
        }
    }

    /// @notice Settles TEE-signed fees of many users at once (contracts.md A3.5); never reverts per
    /// item. Returns one status per item.
    function settleFeesWithTEE(
        TEESettlementData[] calldata settlements
    ) external nonReentrant returns (uint8[] memory statuses) {
        _checkBatch(settlements.length);
        statuses = new uint8[](settlements.length);
        uint totalSettled = 0;
        for (uint i = 0; i < settlements.length; i++) {
            (SettlementStatus status, uint unsettled, uint settled) = _settleOne(settlements[i]);
            statuses[i] = uint8(status);
            totalSettled += settled;
            emit TEESettlementResult(settlements[i].user, status, unsettled);
        }
        if (totalSettled > 0) {
            (bool ok, ) = payable(msg.sender).call{value: totalSettled}("");
            if (!ok) revert TransferFailed();
        }
    }

    /// @notice Dry run of `settleFeesWithTEE` for `msg.sender` as provider: the failed items (status 2-5)
    /// and the partial ones (would-be unsettled amount).
    function previewSettlementResults(
        TEESettlementData[] calldata settlements
    )
        external
        view
        returns (
            address[] memory failedUsers,
            SettlementStatus[] memory failureReasons,
            address[] memory partialUsers,
            uint256[] memory partialAmounts
        )
    {
        uint n = settlements.length;
        failedUsers = new address[](n);
        failureReasons = new SettlementStatus[](n);
        partialUsers = new address[](n);
        partialAmounts = new uint256[](n);
        uint failed = 0;
        uint partials = 0;
        for (uint i = 0; i < n; i++) {
            SettlementStatus status = _check(settlements[i]);
            if (status != SettlementStatus.SUCCESS) {
                failedUsers[failed] = settlements[i].user;
                failureReasons[failed] = status;
                failed++;
                continue;
            }
            uint balance = _s().accounts[_accountKey(settlements[i].user, msg.sender)].balance;
            if (settlements[i].totalFee > balance) {
                partialUsers[partials] = settlements[i].user;
                partialAmounts[partials] = settlements[i].totalFee - balance;
                partials++;
            }
        }
        assembly {
            mstore(failedUsers, failed)
            mstore(failureReasons, failed)
            mstore(partialUsers, partials)
            mstore(partialAmounts, partials)
        }
    }

    // ------------------------------------------------------------------ views

    function getAccount(address user, address provider) external view returns (Account memory) {
        return _accountOf(user, provider);
    }

    function getAllAccounts(uint offset, uint limit) external view returns (Account[] memory accounts, uint total) {
        return _page(_s().accountKeys, offset, limit);
    }

    function getAccountsByProvider(
        address provider,
        uint offset,
        uint limit
    ) external view returns (Account[] memory accounts, uint total) {
        return _page(_s().providerAccountKeys[provider], offset, limit);
    }

    function getAccountsByUser(
        address user,
        uint offset,
        uint limit
    ) external view returns (Account[] memory accounts, uint total) {
        return _page(_s().userAccountKeys[user], offset, limit);
    }

    /// @notice The sub-accounts of `users` with `msg.sender` as provider; zero structs where missing.
    function getBatchAccountsByUsers(address[] calldata users) external view returns (Account[] memory accounts) {
        if (users.length > MAX_BATCH_USERS) revert BatchSizeTooLarge(users.length, MAX_BATCH_USERS);
        accounts = new Account[](users.length);
        for (uint i = 0; i < users.length; i++) {
            bytes32 key = _accountKey(users[i], msg.sender);
            if (_s().accountKeys.contains(key)) accounts[i] = _s().accounts[key];
        }
    }

    function getService(address provider) external view returns (Service memory service) {
        return _serviceOf(provider);
    }

    function getAllServices(uint offset, uint limit) external view returns (Service[] memory services, uint total) {
        InferenceServingStorage storage $ = _s();
        uint end;
        (total, end) = _range($.serviceKeys.length(), offset, limit);
        if (offset >= total) return (new Service[](0), total);
        services = new Service[](end - offset);
        for (uint i = offset; i < end; i++) {
            services[i - offset] = $.services[$.serviceKeys.at(i)];
        }
    }

    function serviceExists(address provider) external view returns (bool) {
        return _s().serviceKeys.contains(_serviceKey(provider));
    }

    // ------------------------------------------------------------------ internals

    function _checkLockTime(uint value) private pure {
        if (value < MIN_LOCKTIME || value > MAX_LOCKTIME) revert LockTimeOutOfRange(value, MIN_LOCKTIME, MAX_LOCKTIME);
    }

    function _checkPair(address user, address provider) private pure {
        if (user == address(0) || provider == address(0)) revert InvalidAddress(address(0));
        if (user == provider) revert ProviderCannotBeUser();
    }

    function _checkBatch(uint count) private pure {
        if (count == 0) revert NoSettlementsProvided();
        if (count > MAX_SETTLEMENTS) revert TooManySettlements(count, MAX_SETTLEMENTS);
    }

    function _accountKey(address user, address provider) private pure returns (bytes32) {
        return keccak256(abi.encode(user, provider));
    }

    function _serviceKey(address provider) private pure returns (bytes32) {
        return keccak256(abi.encode(provider));
    }

    function _accountOf(address user, address provider) private view returns (Account storage) {
        bytes32 key = _accountKey(user, provider);
        if (!_s().accountKeys.contains(key)) revert AccountNotExists(user, provider);
        return _s().accounts[key];
    }

    function _serviceOf(address provider) private view returns (Service storage) {
        bytes32 key = _serviceKey(provider);
        if (!_s().serviceKeys.contains(key)) revert ServiceNotExist(provider);
        return _s().services[key];
    }

    function _range(uint total, uint offset, uint limit) private pure returns (uint, uint end) {
        if (limit == 0) limit = PAGE_LIMIT;
        if (limit > PAGE_LIMIT) revert LimitTooLarge(limit, PAGE_LIMIT);
        end = offset + limit > total ? total : offset + limit;
        return (total, end);
    }

    function _page(
        EnumerableSet.Bytes32Set storage keys,
        uint offset,
        uint limit
    ) private view returns (Account[] memory accounts, uint total) {
        uint end;
        (total, end) = _range(keys.length(), offset, limit);
        if (offset >= total) return (new Account[](0), total);
        accounts = new Account[](end - offset);
        for (uint i = offset; i < end; i++) {
            accounts[i - offset] = _s().accounts[keys.at(i)];
        }
    }

    /// @dev EIP-712 digest of a settlement: domain ("0G Inference Serving", "1", live chain id, this proxy).
    function _settlementDigest(TEESettlementData calldata s) private view returns (bytes32) {
        bytes32 domainSeparator = keccak256(
            abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this))
        );
        bytes32 structHash = keccak256(
            abi.encode(SETTLEMENT_TYPEHASH, s.requestsHash, s.nonce, s.provider, s.user, s.totalFee)
        );
        return ECDSA.toTypedDataHash(domainSeparator, structHash);
    }

    /// @dev Steps 1-6 of contracts.md A3.5 for `msg.sender` as provider; SUCCESS means "acceptable".
    function _check(TEESettlementData calldata s) private view returns (SettlementStatus) {
        if (s.provider != msg.sender) return SettlementStatus.PROVIDER_MISMATCH;
        InferenceServingStorage storage $ = _s();
        bytes32 key = _accountKey(s.user, msg.sender);
        if (!$.accountKeys.contains(key)) return SettlementStatus.INVALID_SIGNATURE;
        bytes32 serviceKey = _serviceKey(msg.sender);
        if (!$.serviceKeys.contains(serviceKey)) return SettlementStatus.PROVIDER_MISMATCH;
        Account storage account = $.accounts[key];
        Service storage service = $.services[serviceKey];
        if (!account.acknowledged || !service.teeSignerAcknowledged || service.teeSignerAddress == address(0)) {
            return SettlementStatus.NO_TEE_SIGNER;
        }
        if (account.nonce >= s.nonce) return SettlementStatus.INVALID_NONCE;
        (address signer, ECDSA.RecoverError err) = ECDSA.tryRecover(_settlementDigest(s), s.signature);
        if (err != ECDSA.RecoverError.NoError || signer != service.teeSignerAddress) {
            return SettlementStatus.INVALID_SIGNATURE;
        }
        return SettlementStatus.SUCCESS;
    }

    /// @dev Applies one settlement; returns (status, unsettled amount, settled amount).
    function _settleOne(
        TEESettlementData calldata s
    ) private returns (SettlementStatus status, uint unsettled, uint settled) {
        status = _check(s);
        if (status != SettlementStatus.SUCCESS) return (status, s.totalFee, 0);
        Account storage account = _s().accounts[_accountKey(s.user, msg.sender)];
        account.nonce = s.nonce;
        uint balance = account.balance;
        settled = s.totalFee < balance ? s.totalFee : balance;
        uint unlocked = balance - account.pendingRefund;
        if (settled > unlocked) account.cancelRefunds(settled - unlocked);
        account.balance = balance - settled;
        if (settled > 0) ILedger(_s().ledgerAddress).spendFund(s.user, settled);
        emit BalanceUpdated(s.user, msg.sender, account.balance, account.pendingRefund);
        if (s.totalFee > balance) {
            status = SettlementStatus.PARTIAL;
            unsettled = s.totalFee - balance;
        }
    }
}
