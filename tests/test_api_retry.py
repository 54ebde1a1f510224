"""The api journey's reading of Retry-After (pure)."""

import httpx
import pytest

from lab.load.api import RETRY_AFTER_CAP, retry_after


@pytest.mark.parametrize(("header", "expected"), [
    ("5", 5.0), ("0.5", 0.5), ("-3", 0.0), ("600", RETRY_AFTER_CAP),
    ("Wed, 21 Oct 2015 07:28:00 GMT", None),  # the HTTP-date form is not used by pretix: ignored, not guessed
])
def test_retry_after_is_read_in_seconds_and_capped(header, expected):
    response = httpx.Response(409, headers={"Retry-After": header})
    assert retry_after(response) == expected


def test_no_header_or_no_response_means_no_hint():
    assert retry_after(httpx.Response(409)) is None
    assert retry_after(None) is None
