// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

import "@openzeppelin/contracts/access/Ownable.sol";
import "@openzeppelin/contracts/security/ReentrancyGuard.sol";
import "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";
import "@openzeppelin/contracts/utils/introspection/ERC165Checker.sol";
import "../utils/Initializable.sol";
import "./IServing.sol";

/// @notice A user's prepaid balance (contracts.md A2.2). `totalBalance - availableBalance` is the part
/// sitting in service sub-accounts.
struct Ledger {
    address user;
    uint availableBalance;
    uint totalBalance;
    string additionalInfo;
}

/// @notice A registered service contract (contracts.md A2.2); `fullName = serviceType + "-" + version`.
struct ServiceInfo {
    address serviceAddress;
    IServing serviceContract;
    string serviceType;
    string version;
    string fullName;
    string description;
    bool isRecommended;
    uint256 registeredAt;
}

/// @title LedgerManager
/// @notice User ledgers (prepaid 0G) and the registry of service contracts; ABI- and
/// behaviour-compatible with the deployed 0G LedgerManager (contracts.md A2).
contract LedgerManager is Ownable, Initializable, ReentrancyGuard {
    using EnumerableSet for EnumerableSet.Bytes32Set;
    using EnumerableSet for EnumerableSet.AddressSet;

    uint public constant MAX_PROVIDERS_PER_BATCH = 20;
    uint public constant MAX_SERVICES = 500;
    uint public constant MAX_PROVIDERS_PER_USER_PER_SERVICE = 50;
    uint public constant MAX_ADDITIONAL_INFO_LENGTH = 4096;
    uint public constant MIN_ACCOUNT_BALANCE = 3 ether;
    uint public constant MIN_TRANSFER_AMOUNT = 1 ether;
    uint private constant DEFAULT_PAGE_LIMIT = 50;

    /// @custom:storage-location erc7201:0g.serving.ledger
    struct LedgerManagerStorage {
        mapping(bytes32 => Ledger) ledgerMap;
        EnumerableSet.Bytes32Set ledgerKeys;
        mapping(address => ServiceInfo) services;
        mapping(string => address) serviceNameToAddress;
        EnumerableSet.AddressSet serviceAddresses;
        mapping(bytes32 => address) recommendedServices;
        mapping(address => mapping(address => EnumerableSet.AddressSet)) userServiceProvidersByAddress;
        mapping(address => bool) ledgerLocks;
    }

    // keccak256(abi.encode(uint256(keccak256("0g.serving.ledger")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant STORAGE_SLOT = 0x0bb5d42557ea6926c17416c5b1c1c29c28d9006d6f713295a2d385f07156ed00;

    error AdditionalInfoTooLong(uint256 length, uint256 max);
    error CallFailed();
    error CallerNotRegisteredService(address caller);
    error DirectDepositsDisabled();
    error InsufficientAvailableBalance(uint256 available, uint256 required);
    error InsufficientBalance(address user);
    error InvalidServiceAddress(address serviceAddress);
    error InvalidServiceType(string serviceType);
    error LedgerExists(address user);
    error LedgerLocked();
    error LedgerNotExists(address user);
    error MinimumDepositRequired(uint256 provided, uint256 required);
    error MustWithdrawAllFundsFirst(uint256 remainingBalance);
    error NoRecommendedService(string serviceType);
    error ServiceAlreadyRegistered(address serviceAddress);
    error ServiceMustImplementIServing(address serviceAddress);
    error ServiceNameExists(string serviceName);
    error ServiceNotFound(address serviceAddress);
    error ServiceNotRegistered(address serviceAddress);
    error ServiceRegistryLimitReached(uint256 limit);
    error ServiceTypeRequired();
    error TooManyProviders(uint256 requested, uint256 maximum);
    error TooManyProvidersForService(uint256 current, uint256 maximum);
    error TransferFailed();
    error VersionRequired();
    error ZeroAddressNotAllowed();
    error ZeroAmountNotAllowed();

    event ServiceRegistered(address indexed serviceAddress, string serviceName);
    event RecommendedServiceUpdated(string serviceType, string version, address serviceAddress);
    event LedgerInfoUpdated(address indexed user, string additionalInfo);
    event FundSpent(address indexed user, address indexed service, uint256 amount);

    constructor() {
        _disableInitializers();
    }

    function _s() private pure returns (LedgerManagerStorage storage $) {
        assembly {
            $.slot := STORAGE_SLOT
        }
    }

    modifier withLedgerLock(address user) {
        LedgerManagerStorage storage $ = _s();
        if ($.ledgerLocks[user]) revert LedgerLocked();
        $.ledgerLocks[user] = true;
        _;
        $.ledgerLocks[user] = false;
    }

    modifier onlyServing() {
        if (!_s().serviceAddresses.contains(msg.sender)) revert CallerNotRegisteredService(msg.sender);
        _;
    }

    /// @notice Sets the owner; callable once, on the proxy only.
    function initialize(address owner) external onlyInitializeOnce {
        _transferOwnership(owner);
    }

    /// @notice Accepts native value only from registered services (refund payouts).
    receive() external payable {
        if (!_s().serviceAddresses.contains(msg.sender)) revert DirectDepositsDisabled();
    }

    // ------------------------------------------------------------------ ledgers

    /// @notice Creates the caller's ledger with `msg.value` (≥ MIN_ACCOUNT_BALANCE).
    function addLedger(
        string memory additionalInfo
    ) external payable withLedgerLock(msg.sender) returns (uint, uint) {
        if (msg.value < MIN_ACCOUNT_BALANCE) revert MinimumDepositRequired(msg.value, MIN_ACCOUNT_BALANCE);
        _checkInfo(additionalInfo);
        bytes32 key = _key(msg.sender);
        if (_s().ledgerKeys.contains(key)) revert LedgerExists(msg.sender);
        _createLedger(key, msg.sender, msg.value, additionalInfo);
        return (msg.value, 0);
    }

    /// @notice Adds `msg.value` to the caller's ledger, creating it when absent.
    function depositFund() external payable withLedgerLock(msg.sender) {
        _deposit(msg.sender);
    }

    /// @notice Adds `msg.value` to `recipient`'s ledger, creating it when absent.
    function depositFundFor(address recipient) external payable withLedgerLock(recipient) {
        if (recipient == address(0)) revert ZeroAddressNotAllowed();
        _deposit(recipient);
    }

    /// @notice Replaces the caller's ledger additional info.
    function updateAdditionalInfo(string memory additionalInfo) external withLedgerLock(msg.sender) {
        _checkInfo(additionalInfo);
        Ledger storage ledger = _ledgerOf(msg.sender);
        ledger.additionalInfo = additionalInfo;
        emit LedgerInfoUpdated(msg.sender, additionalInfo);
    }

    /// @notice Withdraws `amount` neuron of the available balance to the caller.
    function refund(uint amount) external withLedgerLock(msg.sender) {
        Ledger storage ledger = _ledgerOf(msg.sender);
        if (ledger.availableBalance < amount) revert InsufficientBalance(msg.sender);
        uint remaining = ledger.availableBalance - amount;
        if (remaining != 0 && remaining < MIN_ACCOUNT_BALANCE) {
            revert MinimumDepositRequired(remaining, MIN_ACCOUNT_BALANCE);
        }
        ledger.availableBalance = remaining;
        ledger.totalBalance -= amount;
        if (ledger.totalBalance == 0) {
            _deleteServiceAccounts(msg.sender);
            _removeLedger(msg.sender);
        }
        (bool ok, ) = payable(msg.sender).call{value: amount}("");
        if (!ok) revert TransferFailed();
    }

    /// @notice Moves `amount` neuron from the caller's ledger into its sub-account with `provider` in the
    /// service `serviceName` (contracts.md A2.6).
    function transferFund(
        address provider,
        string memory serviceName,
        uint amount
    ) external withLedgerLock(msg.sender) {
        LedgerManagerStorage storage $ = _s();
        Ledger storage ledger = _ledgerOf(msg.sender);
        address serviceAddress = $.serviceNameToAddress[serviceName];
        if (serviceAddress == address(0)) revert ServiceNotFound(address(0));
        IServing serving = IServing(serviceAddress);

        uint transferAmount = amount;
        bytes memory payload;
        if (serving.accountExists(msg.sender, provider)) {
            uint pending = serving.getPendingRefund(msg.sender, provider);
            uint cancel = pending < amount ? pending : amount;
            transferAmount = amount - cancel;
            payload = abi.encodeWithSignature(
                "depositFund(address,address,uint256)",
                msg.sender,
                provider,
                cancel
            );
        } else {
            if (amount < MIN_TRANSFER_AMOUNT) revert MinimumDepositRequired(amount, MIN_TRANSFER_AMOUNT);
            payload = abi.encodeWithSignature(
                "addAccount(address,address,string)",
                msg.sender,
                provider,
                ledger.additionalInfo
            );
            EnumerableSet.AddressSet storage providers = $.userServiceProvidersByAddress[msg.sender][serviceAddress];
            if (!providers.contains(provider)) {
                if (providers.length() >= MAX_PROVIDERS_PER_USER_PER_SERVICE) {
                    revert TooManyProvidersForService(providers.length(), MAX_PROVIDERS_PER_USER_PER_SERVICE);
                }
                providers.add(provider);
            }
        }
        if (ledger.availableBalance < transferAmount) {
            revert InsufficientAvailableBalance(ledger.availableBalance, transferAmount);
        }
        ledger.availableBalance -= transferAmount;
        (bool ok, ) = serviceAddress.call{value: transferAmount}(payload);
        if (!ok) revert CallFailed();
    }

    /// @notice For each provider with a sub-account: collects matured refunds into the available
    /// balance, then requests a refund of everything not already pending.
    function retrieveFund(
        address[] memory providers,
        string memory serviceName
    ) external withLedgerLock(msg.sender) {
        if (providers.length > MAX_PROVIDERS_PER_BATCH) {
            revert TooManyProviders(providers.length, MAX_PROVIDERS_PER_BATCH);
        }
        address serviceAddress = _s().serviceNameToAddress[serviceName];
        if (serviceAddress == address(0)) revert ServiceNotFound(address(0));
        Ledger storage ledger = _ledgerOf(msg.sender);
        IServing serving = IServing(serviceAddress);
        uint collected = 0;
        for (uint i = 0; i < providers.length; i++) {
            if (!serving.accountExists(msg.sender, providers[i])) continue;
            (uint released, , ) = serving.processRefund(msg.sender, providers[i]);
            collected += released;
            serving.requestRefundAll(msg.sender, providers[i]);
        }
        ledger.availableBalance += collected;
    }

    /// @notice Deletes the caller's (empty) ledger and its service sub-accounts.
    function deleteLedger() external nonReentrant withLedgerLock(msg.sender) {
        Ledger storage ledger = _ledgerOf(msg.sender);
        if (ledger.totalBalance != 0) revert MustWithdrawAllFundsFirst(ledger.totalBalance);
        _deleteServiceAccounts(msg.sender);
        _removeLedger(msg.sender);
    }

    /// @notice Called by a service when a provider settles: reduces `user`'s total by `amount`
    /// (the value already sits in the service).
    function spendFund(address user, uint amount) external onlyServing withLedgerLock(user) {
        Ledger storage ledger = _s().ledgerMap[_key(user)];
        uint locked = ledger.totalBalance - ledger.availableBalance;
        if (locked < amount) revert InsufficientAvailableBalance(locked, amount);
        ledger.totalBalance -= amount;
        emit FundSpent(user, msg.sender, amount);
    }

    // ------------------------------------------------------------------ registry

    /// @notice Registers a service contract under `serviceType-version` (owner only).
    function registerService(
        string memory serviceType,
        string memory version,
        address serviceAddress,
        string memory description
    ) external onlyOwner {
        LedgerManagerStorage storage $ = _s();
        if (serviceAddress == address(0)) revert InvalidServiceAddress(address(0));
        if (bytes(serviceType).length == 0) revert ServiceTypeRequired();
        if (bytes(version).length == 0) revert VersionRequired();
        if ($.serviceAddresses.contains(serviceAddress)) revert ServiceAlreadyRegistered(serviceAddress);
        string memory fullName = string.concat(serviceType, "-", version);
        if ($.serviceNameToAddress[fullName] != address(0)) revert ServiceNameExists(fullName);
        if (!ERC165Checker.supportsInterface(serviceAddress, type(IServing).interfaceId)) {
            revert ServiceMustImplementIServing(serviceAddress);
        }
        if ($.serviceAddresses.length() >= MAX_SERVICES) revert ServiceRegistryLimitReached(MAX_SERVICES);
        $.services[serviceAddress] = ServiceInfo({
            serviceAddress: serviceAddress,
            serviceContract: IServing(serviceAddress),
            serviceType: serviceType,
            version: version,
            fullName: fullName,
            description: description,
            isRecommended: false,
            registeredAt: block.timestamp
        });
        $.serviceNameToAddress[fullName] = serviceAddress;
        $.serviceAddresses.add(serviceAddress);
        emit ServiceRegistered(serviceAddress, fullName);
    }

    /// @notice Marks `serviceType-version` as the recommended service of its type (owner only).
    function setRecommendedService(string memory serviceType, string memory version) external onlyOwner {
        LedgerManagerStorage storage $ = _s();
        address serviceAddress = $.serviceNameToAddress[string.concat(serviceType, "-", version)];
        if (serviceAddress == address(0)) revert ServiceNotFound(address(0));
        bytes32 typeKey = keccak256(abi.encodePacked(serviceType));
        address previous = $.recommendedServices[typeKey];
        if (previous != address(0)) $.services[previous].isRecommended = false;
        $.recommendedServices[typeKey] = serviceAddress;
        $.services[serviceAddress].isRecommended = true;
        emit RecommendedServiceUpdated(serviceType, version, serviceAddress);
    }

    // ------------------------------------------------------------------ views

    function getLedger(address user) external view returns (Ledger memory) {
        bytes32 key = _key(user);
        if (!_s().ledgerKeys.contains(key)) revert LedgerNotExists(user);
        return _s().ledgerMap[key];
    }

    function getAllLedgers(uint offset, uint limit) external view returns (Ledger[] memory ledgers, uint total) {
        LedgerManagerStorage storage $ = _s();
        total = $.ledgerKeys.length();
        if (limit == 0) limit = DEFAULT_PAGE_LIMIT;
        if (offset >= total) return (new Ledger[](0), total);
        uint end = offset + limit > total ? total : offset + limit;
        ledgers = new Ledger[](end - offset);
        for (uint i = offset; i < end; i++) {
            ledgers[i - offset] = $.ledgerMap[$.ledgerKeys.at(i)];
        }
    }

    function getLedgerProviders(address user, string memory serviceName) external view returns (address[] memory) {
        address serviceAddress = _s().serviceNameToAddress[serviceName];
        if (serviceAddress == address(0)) revert ServiceNotFound(address(0));
        return _s().userServiceProvidersByAddress[user][serviceAddress].values();
    }

    function getServiceInfo(address serviceAddress) external view returns (ServiceInfo memory) {
        return _s().services[serviceAddress];
    }

    function getServiceAddressByName(string memory serviceName) external view returns (address) {
        return _s().serviceNameToAddress[serviceName];
    }

    function getAllActiveServices() external view returns (ServiceInfo[] memory) {
        LedgerManagerStorage storage $ = _s();
        uint n = $.serviceAddresses.length();
        ServiceInfo[] memory result = new ServiceInfo[](n);
        for (uint i = 0; i < n; i++) {
            result[i] = $.services[$.serviceAddresses.at(i)];
        }
        return result;
    }

    function getRecommendedService(
        string memory serviceType
    ) external view returns (string memory version, address serviceAddress) {
        serviceAddress = _s().recommendedServices[keccak256(abi.encodePacked(serviceType))];
        if (serviceAddress == address(0)) revert NoRecommendedService(serviceType);
        version = _s().services[serviceAddress].version;
    }

    function getAllVersions(
        string memory serviceType
    ) external view returns (string[] memory versions, address[] memory addresses, bool[] memory isRecommendedFlags) {
        LedgerManagerStorage storage $ = _s();
        uint n = $.serviceAddresses.length();
        bytes32 typeHash = keccak256(bytes(serviceType));
        uint count = 0;
        for (uint i = 0; i < n; i++) {
            if (keccak256(bytes($.services[$.serviceAddresses.at(i)].serviceType)) == typeHash) count++;
        }
        versions = new string[](count);
        addresses = new address[](count);
        isRecommendedFlags = new bool[](count);
        uint j = 0;
        for (uint i = 0; i < n; i++) {
            ServiceInfo storage info = $.services[$.serviceAddresses.at(i)];
            if (keccak256(bytes(info.serviceType)) != typeHash) continue;
            versions[j] = info.version;
            addresses[j] = info.serviceAddress;
            isRecommendedFlags[j] = info.isRecommended;
            j++;
        }
    }

    function isRecommendedVersion(string memory serviceType, string memory version) external view returns (bool) {
        address serviceAddress = _s().serviceNameToAddress[string.concat(serviceType, "-", version)];
        if (serviceAddress == address(0)) return false;
        return _s().recommendedServices[keccak256(abi.encodePacked(serviceType))] == serviceAddress;
    }

    // ------------------------------------------------------------------ internals

    function _key(address user) private pure returns (bytes32) {
        return keccak256(abi.encode(user));
    }

    function _checkInfo(string memory info) private pure {
        if (bytes(info).length > MAX_ADDITIONAL_INFO_LENGTH) {
            revert AdditionalInfoTooLong(bytes(info).length, MAX_ADDITIONAL_INFO_LENGTH);
        }
    }

    function _ledgerOf(address user) private view returns (Ledger storage) {
        bytes32 key = _key(user);
        if (!_s().ledgerKeys.contains(key)) revert LedgerNotExists(user);
        return _s().ledgerMap[key];
    }

    function _createLedger(bytes32 key, address user, uint amount, string memory info) private {
        LedgerManagerStorage storage $ = _s();
        Ledger storage ledger = $.ledgerMap[key];
        ledger.user = user;
        ledger.availableBalance = amount;
        ledger.totalBalance = amount;
        ledger.additionalInfo = info;
        $.ledgerKeys.add(key);
    }

    function _deposit(address user) private {
        if (msg.value == 0) revert ZeroAmountNotAllowed();
        bytes32 key = _key(user);
        LedgerManagerStorage storage $ = _s();
        if (!$.ledgerKeys.contains(key)) {
            if (msg.value < MIN_ACCOUNT_BALANCE) revert MinimumDepositRequired(msg.value, MIN_ACCOUNT_BALANCE);
            _createLedger(key, user, msg.value, "");
        } else {
            Ledger storage ledger = $.ledgerMap[key];
            ledger.availableBalance += msg.value;
            ledger.totalBalance += msg.value;
        }
    }

    function _removeLedger(address user) private {
        bytes32 key = _key(user);
        delete _s().ledgerMap[key];
        _s().ledgerKeys.remove(key);
    }

    function _deleteServiceAccounts(address user) private {
        LedgerManagerStorage storage $ = _s();
        uint n = $.serviceAddresses.length();
        for (uint i = 0; i < n; i++) {
            address serviceAddress = $.serviceAddresses.at(i);
            EnumerableSet.AddressSet storage providers = $.userServiceProvidersByAddress[user][serviceAddress];
            for (uint j = providers.length(); j > 0; j--) {
                address provider = providers.at(j - 1);
                try IServing(serviceAddress).deleteAccount(user, provider) {} catch {}
                providers.remove(provider);
            }
        }
    }
}
