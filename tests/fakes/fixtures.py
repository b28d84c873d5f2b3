"""pytest fixtures and client helpers for the fake platforms.

Import the fixtures into a conftest.py to use them in a test folder:

    from tests.fakes.fixtures import mturk_fake, prolific_fake  # noqa: F401

Each fixture starts a fresh server on 127.0.0.1 (port 0) and stops it after
the test; teardown fails the test if the fake raised internally while
serving (a request it could not model, or a bug in the fake).
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.fakes.mturk import FakeMTurk
from tests.fakes.prolific import FakeProlific


@pytest.fixture
def mturk_fake() -> Iterator[FakeMTurk]:
    with FakeMTurk() as fake:
        yield fake
        assert not fake.internal_errors, "\n".join(fake.internal_errors)


@pytest.fixture
def prolific_fake() -> Iterator[FakeProlific]:
    with FakeProlific() as fake:
        yield fake
        assert not fake.internal_errors, "\n".join(fake.internal_errors)


def mturk_client(fake: FakeMTurk, *, attempts: int = 3, read_timeout: float = 30.0):
    """A plain boto3 MTurk client pointed at the fake (standard retry mode, `attempts` in total)."""
    return boto3.client(
        "mturk",
        region_name="us-east-1",
        endpoint_url=fake.url,
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(
            connect_timeout=10,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": attempts},
        ),
    )


def prolific_client(fake: FakeProlific, *, read_timeout: float = 30.0) -> httpx.Client:
    """A plain httpx client for the fake's API with its token."""
    return httpx.Client(
        base_url=fake.api_url,
        headers={"Authorization": f"Token {fake.token}"},
        timeout=httpx.Timeout(10.0, read=read_timeout),
    )
