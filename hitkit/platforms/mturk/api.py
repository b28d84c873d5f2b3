"""The MTurk Requester API through boto3 (`mturk`, us-east-1): the client, calls, listings, errors.

Credentials come only from boto3's standard chain (environment, profile, SSO,
role); hitkit never reads, prints or stores them. Retries are botocore's own
(standard mode: timeouts, dropped connections, throttling and 5xx, with
backoff). What still fails after that becomes Transient (the outcome is
unknown: hitkit.platforms.once asks MTurk before sending again) and a refusal
becomes MTurkRefused. Worker IDs are scrubbed from error messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from hitkit.platforms.base import PlatformError
from hitkit.platforms.once import Transient

SANDBOX_URL = "https://mturk-requester-sandbox.us-east-1.amazonaws.com"
PRODUCTION_URL = "https://mturk-requester.us-east-1.amazonaws.com"
TRANSIENT_CODES = {"ServiceFault", "ThrottlingException", "ServiceUnavailableException",
                   "ServiceUnavailable", "RequestTimeout", "InternalFailure"}


def is_amazon(endpoint: str) -> bool:
    return (urlparse(endpoint).hostname or "").endswith(".amazonaws.com")


def connect(endpoint: str, read_timeout: float = 30.0, attempts: int = 4) -> Any:
    """A boto3 MTurk client for `endpoint`, retrying `attempts` times in all (botocore)."""
    import boto3
    from botocore.config import Config

    return boto3.client("mturk", region_name="us-east-1", endpoint_url=endpoint,
                        config=Config(connect_timeout=10, read_timeout=read_timeout,
                                      retries={"mode": "standard", "total_max_attempts": attempts}))


class MTurkRefused(PlatformError):
    """A refusal: `code` is the error shape botocore parsed (RequestError, ...), `turk_code`
    MTurk's TurkErrorCode, `retried` how many times botocore had already sent this same
    request (its ResponseMetadata.RetryAttempts): a refusal after a retry may be MTurk
    refusing a repeat of a request that went through."""

    def __init__(self, operation: str, code: str, turk_code: str, message: str,
                 retried: int = 0):
        super().__init__(f"MTurk {operation}: {turk_code or code}: {message}")
        self.code, self.turk_code, self.message = code, turk_code, message
        self.retried = retried


class MTurkAPI:
    """A boto3 MTurk client whose errors are Transient or MTurkRefused."""

    def __init__(self, client: Any):
        self.client = client

    def call(self, operation: str, scrub: tuple[str, ...] = (), **params: Any) -> dict:
        """One API call by its MTurk name (CreateHITType); `scrub`: values to keep out of errors."""
        return _guard(operation, scrub, lambda: getattr(self.client, _snake(operation))(**params))

    def pages(self, operation: str, key: str, **params: Any) -> list[dict]:
        """Every item of a paginated listing (botocore's paginator)."""
        paginator = self.client.get_paginator(_snake(operation))
        return _guard(operation, (), lambda: [
            item for page in paginator.paginate(**params, PaginationConfig={"PageSize": 100})
            for item in page.get(key, [])])


def _guard(operation: str, scrub: tuple[str, ...], fn: Callable[[], Any]) -> Any:
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        HTTPClientError,
        ReadTimeoutError,
    )

    try:
        return fn()
    except (ReadTimeoutError, ConnectionError, HTTPClientError) as exc:
        raise Transient(f"MTurk {operation}: {type(exc).__name__}") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        turk = exc.response.get("TurkErrorCode") or ""
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = _scrub(error.get("Message", ""), scrub)
        if code in TRANSIENT_CODES or status >= 500:
            raise Transient(f"MTurk {operation}: {code} {message}") from None
        retried = int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts") or 0)
        raise MTurkRefused(operation, code, turk, message, retried) from None
    except BotoCoreError as exc:
        raise Transient(f"MTurk {operation}: {type(exc).__name__}") from None


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower().replace("h_i_t", "hit")


def _scrub(message: str, secrets: tuple[str, ...]) -> str:
    for value in secrets:
        if value:
            message = message.replace(value, "<worker>")
    return message
