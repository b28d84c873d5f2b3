"""S3 through boto3 for the image store (writing) and the survey's images (reading).

The endpoint and credentials follow boto3's usual settings (environment, profile,
role; AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 for MinIO, moto, ...). Every failure
is an `S3Error` whose message starts with the s3:// URL it concerns.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse


class S3Error(RuntimeError):
    """An S3 request that failed; the message names the URL."""


def is_url(location: str) -> bool:
    return urlparse(location).scheme == "s3"


def split_url(url: str) -> tuple[str, str]:
    """s3://bucket/key -> (bucket, key); either may be empty."""
    parsed = urlparse(url)
    return parsed.netloc, parsed.path.lstrip("/")


def client() -> Any:
    import boto3
    from botocore.config import Config

    # SigV4 explicitly: presigned URLs must be SigV4 to live up to 7 days
    return boto3.client("s3", config=Config(signature_version="s3v4"))


def get(s3: Any, url: str) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_url(url)
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (BotoCoreError, ClientError) as exc:
        raise S3Error(f"{url}: cannot fetch from S3: {exc}") from None


def head(s3: Any, url: str) -> dict[str, str] | None:
    """The object's user metadata, or None when there is no such object."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_url(url)
    try:
        reply = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise S3Error(f"{url}: {exc}") from None
    except BotoCoreError as exc:
        raise S3Error(f"{url}: {exc}") from None
    return reply.get("Metadata", {})


def put(s3: Any, url: str, data: bytes, content_type: str, metadata: dict[str, str],
        cache_control: str | None = None) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_url(url)
    extra = {"CacheControl": cache_control} if cache_control else {}
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type,
                      Metadata=metadata, **extra)
    except (BotoCoreError, ClientError) as exc:
        raise S3Error(f"{url}: upload failed: {exc}") from None
