"""The pure funding decision and the /unsettledfee wire model."""

from __future__ import annotations

from decimal import Decimal

import pytest

from broker._exceptions import InputError
from broker.funding import FundingConfigError, buffer_amount, decide
from broker.funding.protocol import UnsettledFeeResponse

OG = 10**18


def test_funded_account_needs_nothing():
    d = decide(5 * OG, 3 * OG, 2)
    assert (d.required, d.deficit, d.amount, d.needs_transfer) == (5 * OG, 0, 0, False)


def test_deficit_is_transferred_exactly_when_above_one_0g():
    d = decide(5 * OG, 4 * OG + 5 * 10**17, 2)
    assert (d.deficit, d.amount) == (15 * 10**17, 15 * 10**17)


def test_small_deficit_is_rounded_up_to_one_0g():
    d = decide(5 * OG, 3 * OG + 1, 2)
    assert (d.deficit, d.amount) == (1, OG)


def test_missing_sub_account_needs_the_whole_requirement():
    d = decide(None, 7, "1.5")
    assert d.locked_balance is None and d.amount == d.required == 7 + 15 * 10**17


def test_buffer_is_exact_and_floats_refused():
    assert buffer_amount(Decimal("0.1")) == 10**17
    assert buffer_amount(0) == 0
    with pytest.raises(FundingConfigError) as info:
        buffer_amount(0.1)
    assert isinstance(info.value, InputError)
    with pytest.raises(FundingConfigError):
        buffer_amount("-1")
    with pytest.raises(FundingConfigError):
        decide(1.0, 0)  # type: ignore[arg-type]
    with pytest.raises(FundingConfigError):
        decide(0, -1)


def test_unsettled_fee_body():
    big = str(2**70)
    assert (
        UnsettledFeeResponse.model_validate_json(
            f'{{"userAddress":"0xab","unsettledFee":"{big}"}}'
        ).unsettled_fee
        == 2**70
    )
    assert UnsettledFeeResponse.model_validate_json('{"userAddress":"0xab"}').unsettled_fee == 0
    for bad in ('{"unsettledFee":"1.5"}', '{"unsettledFee":"-1"}', '{"unsettledFee":true}'):
        with pytest.raises(ValueError):
            UnsettledFeeResponse.model_validate_json(bad)
