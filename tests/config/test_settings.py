"""broker.config: presets and settings precedence."""

import json
import os
import stat

import pytest

from broker._exceptions import ConfigError
from broker.config import get_preset, load_settings, preset_for_chain_id, save_config
from broker.config.settings import config_file


def test_presets_match_reference():
    main = get_preset("MainNet")
    assert main.chain_id == 16661
    assert main.ledger_address == "0x2dE54c845Cd948B72D2e32e39586fe89607074E3"
    assert main.inference_address == "0x47340d900bdFec2BD393c626E12ea0656F938d84"
    assert get_preset("testnet").chain_id == 16602
    assert (
        preset_for_chain_id(31337).inference_address == "0x0165878A594ca255338adfa4d48449f69242Eb8F"
    )
    assert preset_for_chain_id(16602, dev_mode=True).name == "testnet-dev"
    with pytest.raises(ConfigError):
        get_preset("moon")
    with pytest.raises(ConfigError):
        preset_for_chain_id(1)


def test_env_over_config_file(monkeypatch):
    save_config({"network": "testnet", "rpc_url": "http://127.0.0.1:1"})
    assert load_settings().network == "testnet"
    monkeypatch.setenv("ZG_NETWORK", "hardhat")
    assert load_settings().network == "hardhat"
    assert load_settings(network="mainnet").network == "mainnet"
    config_file().unlink()


def test_save_config_merges_and_is_private():
    path = save_config({"network": "testnet"})
    save_config({"rpc_url": "http://127.0.0.1:9"})
    data = json.loads(path.read_text())
    assert data["network"] == "testnet" and data["rpc_url"] == "http://127.0.0.1:9"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(ValueError):
        save_config({"private_key": "0x" + "1" * 64})
    assert path == config_file()
    config_file().unlink()
