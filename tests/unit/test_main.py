"""`python -m workpools` (workpools/__main__.py): the operator is started again, after a doubling
pause, when kopf stops on a response cut off mid-body; any other ending is final."""

from __future__ import annotations

import aiohttp
import pytest

import workpools.__main__ as main


def test_a_response_cut_mid_body_starts_the_operator_again_after_a_doubling_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(main.time, "sleep", pauses.append)
    outcomes = [aiohttp.ClientPayloadError("Response payload is not completed")] * 3 + [None]
    started: list[int] = []

    async def operate() -> None:
        started.append(1)
        if (outcome := outcomes.pop(0)) is not None:
            raise outcome

    main.operate_until_done(operate)
    assert len(started) == 4
    assert pauses == [main.AGAIN_FIRST, 2 * main.AGAIN_FIRST, 4 * main.AGAIN_FIRST]


def test_any_other_failure_ends_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(main.time, "sleep", lambda _: pytest.fail("no pause expected"))

    async def operate() -> None:
        raise aiohttp.ClientConnectionError("refused")

    with pytest.raises(aiohttp.ClientConnectionError):
        main.operate_until_done(operate)
