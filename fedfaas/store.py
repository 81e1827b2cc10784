"""The one S3 client: durable storage of updates, models and partial aggregates.

S3 (MinIO in production, SeaweedFS locally) is fedfaas's source of truth: an
update is acknowledged only after :meth:`ObjectStore.put` returned.  Every call
has a connect and read timeout; connection-level failures surface as
:class:`fedfaas.errors.Unavailable` (503, safe to retry), missing objects as
:class:`fedfaas.errors.NotFound`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import urllib3
from minio import Minio
from minio.credentials import Credentials
from minio.error import MinioException, S3Error
from minio.signer import sign_v4_s3

from fedfaas.config import Settings
from fedfaas.errors import NotFound, Unavailable

# A single PUT up to this size; SeaweedFS and MinIO both take it, and one
# request is much cheaper than a multipart upload for typical model sizes.
PART_SIZE = 128 * 1024**2
HEALTH_TIMEOUT_S = 2.0
"""Longest a health probe waits for S3 (well inside a readiness probe's own timeout)."""


class _ViewReader:
    """File-like reader over a memoryview, so uploads do not copy the body."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        chunk = self._view[self._pos : end].tobytes()
        self._pos = end
        return chunk


@dataclass(frozen=True)
class StoredObject:
    """Metadata of one stored object."""

    key: str
    size: int
    etag: str


class ObjectStore:
    """Thin, timeout-bounded wrapper over the ``minio`` client for one bucket.

    Parameters
    ----------
    settings
        Endpoint, credentials, bucket and timeouts.
    """

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self._settings = settings
        timeout = urllib3.Timeout(connect=min(5.0, settings.s3_timeout_s), read=settings.s3_timeout_s)
        # minio retries internally on connection errors; keep that short so a
        # dead S3 turns into a 503 quickly instead of a hung request.
        http = urllib3.PoolManager(
            timeout=timeout,
            maxsize=64,
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
        )
        self._http = http
        self._client = self._minio(http)
        # Readiness probes must answer within their own timeout even when S3 hangs
        # (accepts connections, never answers): a short read and no retries.
        self._probe = self._minio(urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=HEALTH_TIMEOUT_S, read=HEALTH_TIMEOUT_S),
            maxsize=2, retries=False))

    def _minio(self, http: urllib3.PoolManager) -> Minio:
        s = self._settings
        return Minio(s.s3_endpoint, access_key=s.s3_access_key, secret_key=s.s3_secret_key,
                     secure=s.s3_secure, region=s.s3_region, http_client=http)

    @property
    def client(self) -> Minio:
        """The underlying minio client (for tools that need the full API)."""
        return self._client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NoSuchBucket"):
                raise NotFound(f"{what}: object not found") from None
            raise Unavailable(f"{what}: S3 error {exc.code}") from None
        except MinioException as exc:  # e.g. a 5xx answer with no S3 error body
            raise Unavailable(f"{what}: S3 answered an error ({type(exc).__name__})") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable(f"{what}: S3 unreachable ({type(exc).__name__})") from None

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist yet."""
        if not self._call("bucket_exists", self._client.bucket_exists, self.bucket):
            try:
                self._client.make_bucket(self.bucket)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise Unavailable(f"make_bucket: S3 error {exc.code}") from None
            except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise Unavailable(f"make_bucket: S3 failed ({type(exc).__name__})") from None

    def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        *,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
        sha256: str | None = None,
    ) -> StoredObject:
        """Store ``data`` under ``key``; returns once S3 has acknowledged it.

        When the caller already knows the body's ``sha256`` (hex), the PUT is
        signed with it, so the body is neither hashed nor copied a second time;
        servers that check the signed payload hash (MinIO, AWS S3) then also
        refuse a transfer corrupted on the way.
        """
        length = memoryview(data).nbytes
        if sha256 is not None:
            return self._signed_put(key, data, length, sha256, content_type, metadata or {})
        result = self._call(
            f"put {key}",
            self._client.put_object,
            self.bucket,
            key,
            _ViewReader(data),
            length,
            content_type=content_type,
            metadata=metadata,
            part_size=max(PART_SIZE, 5 * 1024**2),
        )
        return StoredObject(key=key, size=length, etag=str(result.etag))

    def _signed_put(self, key: str, data: bytes | bytearray | memoryview, length: int, sha256: str,
                    content_type: str, metadata: dict[str, str]) -> StoredObject:
        scheme = "https" if self._settings.s3_secure else "http"
        endpoint = self._settings.s3_endpoint
        url = urlsplit(f"{scheme}://{endpoint}/{self.bucket}/{quote(key, safe='/')}")
        date = datetime.now(UTC)
        headers: dict[str, Any] = {
            "Host": endpoint,
            "Content-Length": str(length),
            "Content-Type": content_type,
            "x-amz-content-sha256": sha256,
            "x-amz-date": date.strftime("%Y%m%dT%H%M%SZ"),
            **{f"x-amz-meta-{k}": v for k, v in metadata.items()},
        }
        headers = sign_v4_s3(
            method="PUT", url=url, region=self._settings.s3_region, headers=headers,
            credentials=Credentials(self._settings.s3_access_key, self._settings.s3_secret_key),
            content_sha256=sha256, date=date,
        )
        try:
            resp = self._http.urlopen("PUT", url.geturl(), body=memoryview(data).cast("B"),
                                      headers=headers, retries=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable(f"put {key}: S3 unreachable ({type(exc).__name__})") from None
        if resp.status != 200:
            raise Unavailable(f"put {key}: S3 answered {resp.status}")
        return StoredObject(key=key, size=length, etag=str(resp.headers.get("ETag", "")).strip('"'))

    def get(self, key: str) -> bytes:
        """Read a whole object."""
        resp = self._call(f"get {key}", self._client.get_object, self.bucket, key)
        try:
            return bytes(self._call(f"read {key}", resp.read))
        finally:
            resp.close()
            resp.release_conn()

    def stat(self, key: str) -> StoredObject | None:
        """Size and etag of ``key``, or None when it does not exist."""
        try:
            st = self._call(f"stat {key}", self._client.stat_object, self.bucket, key)
        except NotFound:
            return None
        return StoredObject(key=key, size=int(st.size or 0), etag=str(st.etag))

    def exists(self, key: str) -> bool:
        """True when ``key`` is stored."""
        return self.stat(key) is not None

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error when absent)."""
        self._call(f"delete {key}", self._client.remove_object, self.bucket, key)

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix``, recursively, in lexical order."""
        objects = self._call(
            f"list {prefix}", self._client.list_objects, self.bucket, prefix=prefix, recursive=True
        )
        try:
            for obj in objects:
                yield str(obj.object_name)
        except S3Error as exc:
            raise Unavailable(f"list {prefix}: S3 error {exc.code}") from None
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable(f"list {prefix}: S3 unreachable ({type(exc).__name__})") from None

    def healthy(self) -> bool:
        """True when S3 answers a bucket request within ``HEALTH_TIMEOUT_S``."""
        try:
            self._call("health", self._probe.bucket_exists, self.bucket)
        except Unavailable:
            return False
        return True


def digest(data: bytes | bytearray | memoryview) -> str:
    """Content digest used to make re-sent updates idempotent (sha256 hex)."""
    return hashlib.sha256(memoryview(data)).hexdigest()
