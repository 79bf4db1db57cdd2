"""Blob Storage through the ``azure_blob`` connection (Azure, or Azurite locally).

A thin layer over the provider's ``WasbHook``: the pipeline's few operations with the blob layout
of docs/CONTRACT.md in one place.

Reads stream through the SDK's own download (``download_blob``, conditional on the ETag found
first, then ``chunks()`` or ``readinto``), on a client whose chunk size is the read's: memory holds
a few chunks whatever the blob's size, and a blob replaced during a read fails it, naming the
blob, instead of mixing two versions.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hr_pipeline.runtime.settings import BLOB_CONN_ID
from hr_pipeline.runtime.streams import BlocksFile, InBackground, read_ahead

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlobInfo:
    container: str
    name: str
    size: int
    last_modified: datetime | None = None
    metadata: dict[str, str] | None = None
    etag: str | None = None


READ_CHUNK_BYTES = 4 << 20  # one GET of a streamed read: what a read holds per chunk in memory
DOWNLOAD_CONCURRENCY = 4  # parallel GETs of a download to a file (a chunk in memory each)
DEFAULT_COPY_TIMEOUT = 1800.0  # seconds a server-side copy may take before it is aborted
# Copy Blob takes its source as a URL of up to 2 KiB (x-ms-copy-source); a longer one (a name
# of many characters that URLs escape) is copied through this process instead.
COPY_SOURCE_MAX_URL = 2048
# On a blob copied through this process: which source it holds (sha256 of its URL's path), as
# Copy Blob's own x-ms-copy-source says for a server-side copy.
MOVED_FROM_KEY = "hr_moved_from"


class BlobAccessError(RuntimeError):
    """A read or write of one blob failed; the message names the blob."""


class BlobNotFoundError(BlobAccessError):
    pass


class BlobExistsError(BlobAccessError):
    """A blob that must not be replaced already has that name."""


class BlobChangedError(BlobAccessError):
    """The blob was replaced while it was read: what was read so far is of a version that is gone
    (reading it again reads the new one)."""


@contextmanager
def naming_the_blob(container: str, name: str, action: str):
    """Errors of the storage service re-raised with the container and blob they concern (the
    service's own "The specified blob does not exist." tells an operator nothing)."""
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    try:
        yield
    except ResourceNotFoundError as error:
        what = "container" if _error_code(error) == "ContainerNotFound" else "blob"
        raise BlobNotFoundError(f"Cannot {action} {container}/{name}: the {what} does not exist") from error
    except HttpResponseError as error:
        raise BlobAccessError(f"Cannot {action} {container}/{name}: {_describe(error)}") from error


@contextmanager
def reading_the_blob(container: str, name: str, etag: str | None):
    """``naming_the_blob`` for a read pinned to version ``etag``: a blob replaced meanwhile (HTTP
    412 on a later chunk's GET) raises ``BlobChangedError``."""
    from azure.core.exceptions import HttpResponseError

    with naming_the_blob(container, name, "read"):
        try:
            yield
        except HttpResponseError as error:
            if error.status_code != 412:
                raise
            raise BlobChangedError(
                f"Cannot read {container}/{name}: it was replaced while it was read (it no longer "
                f"has ETag {etag}); none of the new version was read, read it again"
            ) from error


class BlobMoveError(RuntimeError):
    """A move that did not happen; the message names the container and both blobs. The
    source is never deleted unless its copy is complete."""


class BlobSourceMissingError(BlobMoveError):
    """The blob to move does not exist (and was not moved by an earlier try)."""


class BlobSourceChangedError(BlobMoveError):
    """The blob to move is not (or no longer) the version the caller expected."""


def _error_code(error) -> str | None:
    code = getattr(error, "error_code", None)
    return getattr(code, "value", code)


def _describe(error) -> str:
    """An Azure error in one line: status, error code and the first line of its message."""
    message = (getattr(error, "message", None) or str(error)).strip().splitlines()
    return (
        f"HTTP {getattr(error, 'status_code', '?')} {_error_code(error) or ''}: "
        f"{message[0] if message else ''}"
    ).replace(" :", ":")


def _url_path(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(url).path)


def _moved_from(source_url: str) -> str:
    import hashlib

    return hashlib.sha256(_url_path(source_url).encode("utf-8")).hexdigest()


def _copied_from(destination_client, source_url: str, pending_too: bool = False):
    """The destination's properties if it holds (or, with ``pending_too``, is receiving) a copy
    of ``source_url``; else None."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        properties = destination_client.get_blob_properties()
    except ResourceNotFoundError:
        return None
    if (properties.metadata or {}).get(MOVED_FROM_KEY) == _moved_from(source_url):
        return properties
    copy = properties.copy
    statuses = ("success", "pending") if pending_too else ("success",)
    if copy is None or copy.status not in statuses or not copy.source:
        return None
    return properties if _url_path(copy.source) == _url_path(source_url) else None


def wait_for_copy(
    destination_client,
    copy_id: str,
    where: str,
    timeout: float,
    poll_interval: float = 0.5,
    clock=time.monotonic,
    sleep=time.sleep,
):
    """Poll the destination of copy ``copy_id`` (Get Blob Properties, ``x-ms-copy-status``) until
    it succeeds; its properties then. A copy that fails or is aborted raises; one still pending
    after ``timeout`` seconds is aborted, then raises. The poll interval doubles up to 10 s."""
    deadline = clock() + timeout
    interval = poll_interval
    while True:
        properties = destination_client.get_blob_properties()
        copy = properties.copy
        if copy is None or copy.id != copy_id:
            raise BlobMoveError(
                f"Copy of {where} was replaced by another copy (id {copy_id} is "
                f"now {getattr(copy, 'id', None)}); the source is left in place"
            )
        if copy.status == "success":
            return properties
        if copy.status != "pending":
            detail = copy.status_description or "no detail"
            raise BlobMoveError(f"Copy of {where} {copy.status}: {detail}; the source is left in place")
        if clock() >= deadline:
            try:
                destination_client.abort_copy(copy_id)
            except Exception as error:  # noqa: BLE001 - the timeout is the error to report
                log.warning("Aborting the copy of %s failed: %s", where, error)
            raise BlobMoveError(
                f"Copy of {where} did not finish within {timeout:g} s (progress {copy.progress}); "
                "it was aborted and the source is left in place"
            )
        log.info("Copy of %s pending (%s)", where, copy.progress)
        sleep(min(interval, max(0.0, deadline - clock())))
        interval = min(interval * 2, 10.0)


class BlobStore:
    def __init__(self, conn_id: str = BLOB_CONN_ID):
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        self.hook = WasbHook(wasb_conn_id=conn_id)
        self.service = self.hook.get_conn()
        self._readers: dict[int, object] = {}

    def _reader(self, chunk_bytes: int):
        """A client of the same account, credential and API version whose downloads GET
        ``chunk_bytes`` at a time, the first GET too (the SDK's default first GET is 32 MiB):
        chunk sizes are settings of a client, not of a download."""
        reader = self._readers.get(chunk_bytes)
        if reader is None:
            from azure.storage.blob import BlobServiceClient

            reader = BlobServiceClient(
                self.service.url,  # with its SAS query, when the connection has one
                credential=self.service.credential,
                api_version=self.service.api_version,
                max_single_get_size=chunk_bytes,
                max_chunk_get_size=chunk_bytes,
            )
            self._readers[chunk_bytes] = reader
        return reader

    def _pinned_chunks(self, container: str, name: str, etag: str, chunk_bytes: int) -> Iterator[bytes]:
        """Version ``etag`` of a blob, streamed by the SDK (``download_blob(...).chunks()``) in
        chunks of ``chunk_bytes``, one GET each, one chunk in memory at a time. Every GET is
        conditional on the ETag (If-Match): a blob replaced meanwhile fails the next GET (HTTP
        412) instead of mixing two versions. Raises the SDK's errors."""
        from azure.core import MatchConditions

        blob = self._reader(chunk_bytes).get_blob_client(container, name)
        download = blob.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
        yield from download.chunks()

    def _current_etag(self, container: str, name: str) -> str:
        with naming_the_blob(container, name, "read"):
            return self.container(container).get_blob_client(name).get_blob_properties().etag

    def container(self, name: str):
        return self.service.get_container_client(name)

    def ensure_container(self, name: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self.container(name).create_container()
        except ResourceExistsError:
            pass

    def list(self, container: str, prefix: str = "") -> list[BlobInfo]:
        """Blobs under ``prefix``, in name order, with their metadata."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            blobs = [
                BlobInfo(container, b.name, b.size, b.last_modified, dict(b.metadata or {}), b.etag)
                for b in self.container(container).list_blobs(name_starts_with=prefix, include=["metadata"])
            ]
        except ResourceNotFoundError:
            return []
        return sorted(blobs, key=lambda blob: blob.name)

    def exists(self, container: str, name: str) -> bool:
        return self.container(container).get_blob_client(name).exists()

    def properties(self, container: str, name: str) -> BlobInfo:
        with naming_the_blob(container, name, "read the properties of"):
            props = self.container(container).get_blob_client(name).get_blob_properties()
        return BlobInfo(
            container, name, props.size, props.last_modified, dict(props.metadata or {}), props.etag
        )

    def create_if_absent(
        self, container: str, name: str, data: bytes, metadata: dict[str, str] | None = None
    ) -> bool:
        """Create blob ``name`` only if no blob has that name (If-None-Match: *); whether it did."""
        from azure.core.exceptions import ResourceExistsError

        self.ensure_container(container)
        try:
            self.container(container).upload_blob(name, data, overwrite=False, metadata=metadata)
        except ResourceExistsError:
            return False
        return True

    def replace_if_unchanged(
        self, container: str, name: str, data: bytes, etag: str, metadata: dict[str, str] | None = None
    ) -> bool:
        """Overwrite blob ``name`` only if it still has ``etag``; whether it did."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError

        try:
            self.container(container).upload_blob(
                name,
                data,
                overwrite=True,
                metadata=metadata,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError as error:
            if error.status_code in (404, 409, 412):
                return False
            raise
        return True

    def delete_if_unchanged(self, container: str, name: str, etag: str) -> bool:
        """Delete blob ``name`` only if it still has ``etag``; whether it did."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError

        try:
            self.container(container).get_blob_client(name).delete_blob(
                etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except HttpResponseError as error:
            if error.status_code in (404, 412):
                return False
            raise
        return True

    def set_metadata(self, container: str, name: str, metadata: dict[str, str]) -> None:
        with naming_the_blob(container, name, "set the metadata of"):
            self.container(container).get_blob_client(name).set_blob_metadata(metadata)

    def download_to_file(self, container: str, name: str, path: Path) -> int:
        """Download a blob to a local file, ``DOWNLOAD_CONCURRENCY`` chunks of
        ``READ_CHUNK_BYTES`` at a time (the SDK's ``readinto``), all of the version found first;
        returns the bytes written."""
        from azure.core import MatchConditions

        etag = self._current_etag(container, name)
        blob = self._reader(READ_CHUNK_BYTES).get_blob_client(container, name)
        with reading_the_blob(container, name, etag), open(path, "wb") as handle:
            written = blob.download_blob(
                etag=etag, match_condition=MatchConditions.IfNotModified, max_concurrency=DOWNLOAD_CONCURRENCY
            ).readinto(handle)
        log.info("Downloaded %s/%s: %d bytes", container, name, written)
        return written

    def iter_blocks(self, container: str, name: str, block_bytes: int = READ_CHUNK_BYTES) -> Iterator[bytes]:
        """A blob's bytes in blocks of ``block_bytes`` (the last one shorter), streamed: memory
        holds one block whatever the blob's size. Every block is of the version found first (its
        ETag): a blob replaced meanwhile fails the read (``BlobChangedError``) instead of mixing
        two versions."""
        etag = self._current_etag(container, name)
        with reading_the_blob(container, name, etag):
            yield from self._pinned_chunks(container, name, etag, block_bytes)

    def decompressed_blocks(
        self, container: str, name: str, compression: str = "zstd", block_bytes: int = 4 << 20
    ) -> Iterator[bytes]:
        """The decompressed bytes of a compressed blob (see ``prefetched_blocks``), in blocks of
        ``block_bytes``, decompressed as they arrive (Arrow's codec, in C++)."""
        import pyarrow as pa

        fetched = io.BufferedReader(BlocksFile(self.prefetched_blocks(container, name)))
        source = pa.PythonFile(fetched, mode="r")
        with pa.CompressedInputStream(source, compression) as stream:
            while block := stream.read(block_bytes):
                yield block

    def prefetched_blocks(self, container: str, name: str, depth: int = 4) -> Iterator[bytes]:
        """``iter_blocks``, fetched by a background thread up to ``depth`` blocks ahead, so the
        consumer (a load) does not wait for the network between blocks: memory holds at most
        ``depth + 2`` blocks. (The SDK's ``chunks()`` fetches one chunk per ``next``, whatever
        its ``max_concurrency``.)"""
        return read_ahead(self.iter_blocks(container, name, READ_CHUNK_BYTES), depth, "blob-download")

    def download_bytes(self, container: str, name: str) -> bytes:
        with naming_the_blob(container, name, "read"):
            return self.container(container).get_blob_client(name).download_blob().readall()

    def upload_file(
        self,
        container: str,
        name: str,
        path: Path,
        metadata: dict[str, str] | None = None,
        overwrite: bool = True,
    ) -> None:
        """Upload a local file as blob ``name``. With ``overwrite=False`` the service refuses if
        the name is taken (If-None-Match: *, checked when the blob is committed): BlobExistsError."""
        from azure.core.exceptions import ResourceExistsError

        self.ensure_container(container)
        try:
            with open(path, "rb") as handle:
                self.container(container).upload_blob(
                    name, handle, overwrite=overwrite, metadata=metadata, max_concurrency=2
                )
        except ResourceExistsError as error:
            raise BlobExistsError(f"Cannot upload {container}/{name}: a blob of that name exists") from error
        log.info("Uploaded %s/%s: %d bytes", container, name, Path(path).stat().st_size)

    def streaming_upload(self, container: str, name: str, block_bytes: int = 2 << 20) -> StreamingUpload:
        """A writable file whose bytes become blob ``name`` as they are written (see
        ``StreamingUpload``)."""
        self.ensure_container(container)
        return StreamingUpload(self.container(container).get_blob_client(name), block_bytes)

    def upload_bytes(
        self, container: str, name: str, data: bytes, metadata: dict[str, str] | None = None
    ) -> None:
        self.ensure_container(container)
        self.container(container).upload_blob(name, data, overwrite=True, metadata=metadata)

    def move(
        self,
        container: str,
        source: str,
        destination: str,
        *,
        if_match_etag: str | None = None,
        copy_timeout: float = DEFAULT_COPY_TIMEOUT,
        poll_interval: float = 0.5,
    ) -> None:
        """Move blob ``source`` to ``destination`` (same container): copy, then delete.

        Copy then delete, so a blob is never lost if the move stops half way: until the copy has
        finished, the source is untouched; after, both exist until the source is deleted.

        The copy is Azure's asynchronous server-side Copy Blob (no size limit, no bytes through
        this process), polled until it finishes, for at most ``copy_timeout`` seconds. Within one
        storage account the service authorises the read of the source with the caller's own
        credential, Shared Key or Microsoft Entra ID (OAuth), so no SAS is needed. (The
        synchronous Copy Blob From URL is limited to 256 MiB and needs its source authorised
        separately, by a SAS or a source bearer token.) A source whose URL is longer
        than Copy Blob takes (``COPY_SOURCE_MAX_URL``) is copied through this process instead,
        block by block, with its metadata.

        The copy is of one version of the source, pinned by its ETag: ``if_match_etag`` if given
        (the move is refused when the source no longer has it), else the ETag read when the move
        starts. The copy is made only from that version (``x-ms-source-if-match``; the service
        also fails a copy whose source changes while it runs) and the source is deleted only if
        it still has that ETag (``If-Match``): a source rewritten meanwhile is left in place.

        Safe to retry: a move whose source is gone but whose destination was copied from it (an
        earlier try that stopped after its delete) is done; a copy of this source still pending
        on the destination (an earlier try that stopped while it ran) is waited for, not
        started again.

        Raises ``BlobSourceMissingError``, ``BlobSourceChangedError`` or ``BlobMoveError``,
        each naming the container and the blobs.
        """
        source_client = self.container(container).get_blob_client(source)
        destination_client = self.container(container).get_blob_client(destination)
        where = f"{container}/{source} to {container}/{destination}"
        properties = self._source_version(source_client, destination_client, where, if_match_etag)
        if properties is None:
            return
        self._copy_checked(source_client, destination_client, properties, where, copy_timeout, poll_interval)
        self._delete_source(source_client, properties.etag, where, destination)
        log.info("Moved %s/%s to %s (%d bytes)", container, source, destination, properties.size)

    def copy(
        self,
        container: str,
        source: str,
        destination: str,
        *,
        copy_timeout: float = DEFAULT_COPY_TIMEOUT,
        poll_interval: float = 0.5,
    ) -> None:
        """Copy blob ``source`` to ``destination`` (same container) as ``move`` copies (server-side,
        of the version found first, through this process for a name too long for Copy Blob); the
        source stays. A blob already named ``destination`` is replaced. Safe to retry."""
        source_client = self.container(container).get_blob_client(source)
        destination_client = self.container(container).get_blob_client(destination)
        where = f"{container}/{source} to {container}/{destination}"
        properties = self._source_version(source_client, destination_client, where, None)
        if properties is not None:
            self._copy_checked(
                source_client, destination_client, properties, where, copy_timeout, poll_interval
            )
            log.info("Copied %s/%s to %s (%d bytes)", container, source, destination, properties.size)

    def _copy_checked(
        self,
        source_client,
        destination_client,
        properties,
        where: str,
        copy_timeout: float,
        poll_interval: float,
    ) -> None:
        """Copy the source's version ``properties.etag``; the copy must be of its size."""
        container, source = source_client.container_name, source_client.blob_name
        if len(source_client.url) > COPY_SOURCE_MAX_URL:
            copied = self._copy_through(source_client, destination_client, properties, where)
        else:
            copied = self._copy_version(
                source_client, destination_client, properties.etag, where, copy_timeout, poll_interval
            )
        if copied.size != properties.size:
            raise BlobMoveError(
                f"Copy of {where} finished with {copied.size} bytes, but the source has "
                f"{properties.size}; {container}/{source} is left in place"
            )

    @staticmethod
    def _source_version(source_client, destination_client, where: str, if_match_etag: str | None):
        """The properties of the source's version to move (``if_match_etag``'s, else the current
        one); None when an earlier try already moved it."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError

        container, source = source_client.container_name, source_client.blob_name
        expected = (
            {"etag": if_match_etag, "match_condition": MatchConditions.IfNotModified} if if_match_etag else {}
        )
        try:
            return source_client.get_blob_properties(**expected)
        except HttpResponseError as error:
            if error.status_code == 412:
                raise BlobSourceChangedError(
                    f"Not moving {where}: {container}/{source} no longer has ETag {if_match_etag} "
                    "(it was rewritten since it was read); it is left in place"
                ) from None
            if error.status_code == 404 and _error_code(error) == "BlobNotFound":
                if _copied_from(destination_client, source_client.url) is not None:
                    log.info(
                        "%s/%s was already moved to %s (by an earlier try)",
                        container,
                        source,
                        destination_client.blob_name,
                    )
                    return None
                raise BlobSourceMissingError(
                    f"Cannot move {where}: the source blob {container}/{source} does not exist"
                ) from None
            raise BlobMoveError(
                f"Cannot move {where}: reading {container}/{source} failed: {_describe(error)}"
            ) from error

    @staticmethod
    def _delete_source(source_client, etag: str, where: str, destination: str) -> None:
        """Delete the source once copied, only if it still is version ``etag`` (If-Match)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError

        container, source = source_client.container_name, source_client.blob_name
        try:
            source_client.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as error:
            if error.status_code == 412:
                raise BlobSourceChangedError(
                    f"Copied {where} (the version with ETag {etag}), but {container}/{source} "
                    "was rewritten meanwhile: it is left in place, not deleted"
                ) from None
            if error.status_code != 404:
                raise BlobMoveError(
                    f"Copied {where}, but deleting {container}/{source} failed: {_describe(error)}"
                ) from error
            log.warning(
                "%s/%s was deleted by someone else after it was copied to %s", container, source, destination
            )

    def _copy_through(
        self, source_client, destination_client, properties, where: str, block_bytes: int = READ_CHUNK_BYTES
    ):
        """Copy the source's version ``properties.etag`` by streaming it here (``_pinned_chunks``)
        into the destination (Put Block, Put Block List: it appears whole or not at all), with the
        source's metadata and ``MOVED_FROM_KEY``; the destination's properties then."""
        from azure.core.exceptions import HttpResponseError

        container, source = source_client.container_name, source_client.blob_name
        metadata = {**(properties.metadata or {}), MOVED_FROM_KEY: _moved_from(source_client.url)}
        try:
            with StreamingUpload(destination_client, block_bytes, metadata=metadata) as upload:
                for chunk in self._pinned_chunks(container, source, properties.etag, block_bytes):
                    upload.write(chunk)
        except HttpResponseError as error:
            if error.status_code == 412:
                raise BlobSourceChangedError(
                    f"Not moving {where}: {container}/{source} changed since it was read "
                    f"(ETag {properties.etag}); it is left in place"
                ) from None
            if error.status_code == 404 and _error_code(error) == "BlobNotFound":
                raise BlobSourceMissingError(
                    f"Cannot move {where}: the source blob {container}/{source} no longer exists"
                ) from None
            raise BlobMoveError(f"Copy of {where} through this process failed: {_describe(error)}") from error
        log.info("Copied %s through this process (its URL is too long for Copy Blob)", where)
        return destination_client.get_blob_properties()

    @staticmethod
    def _copy_version(
        source_client, destination_client, etag: str, where: str, timeout: float, poll_interval: float
    ):
        """Server-side copy of the source's version ``etag``; the destination's properties once
        the copy has succeeded."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError

        container, source = source_client.container_name, source_client.blob_name
        try:
            started = destination_client.start_copy_from_url(
                source_client.url,
                source_etag=etag,
                source_match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError as error:
            code = _error_code(error)
            if error.status_code == 412:  # SourceConditionNotMet (Azurite: ConditionNotMet)
                raise BlobSourceChangedError(
                    f"Not moving {where}: {container}/{source} changed since it was read "
                    f"(ETag {etag}); it is left in place"
                ) from None
            if code == "BlobNotFound":
                raise BlobSourceMissingError(
                    f"Cannot move {where}: the source blob {container}/{source} no longer exists"
                ) from None
            if code != "PendingCopyOperation":
                # CannotVerifyCopySource among others: the service could not read the source.
                raise BlobMoveError(f"Copy of {where} could not start: {_describe(error)}") from error
            # An earlier try's copy of this source still runs: wait for it rather than start
            # another. (Had the source changed since it started, the service fails it.)
            pending = _copied_from(destination_client, source_client.url, pending_too=True)
            if pending is None:
                raise BlobMoveError(
                    f"Copy of {where} could not start: another copy into "
                    f"{container}/{destination_client.blob_name} is pending"
                ) from error
            log.info("A copy of %s started by an earlier try is still pending: waiting for it", where)
            started = {"copy_id": pending.copy.id}
        return wait_for_copy(destination_client, started["copy_id"], where, timeout, poll_interval)

    def delete(self, container: str, name: str) -> None:
        with naming_the_blob(container, name, "delete"):
            self.container(container).get_blob_client(name).delete_blob()


class StreamingUpload:
    """A blob written like a file, uploaded while its writer goes on.

    Writes are gathered into blocks of ``block_bytes``; a background thread stages each block
    (Put Block) while the caller produces the next, and ``close`` commits the block list (Put
    Block List), which is when the blob appears, whole. At most two blocks wait, so memory stays
    a few blocks whatever the blob's size. If the upload fails, the next ``write`` or ``close``
    raises; an uncommitted blob is discarded by the service.

    (The SDK's ``upload_blob`` of an iterable pulls its data; the writers here, fastavro and
    Arrow's CSV writer, push theirs, so the staging runs beside them instead.)
    """

    def __init__(self, blob_client, block_bytes: int, metadata: dict[str, str] | None = None):
        self._client = blob_client
        self._block_bytes = block_bytes
        self._metadata = metadata
        self._buffer = bytearray()
        self._block_ids: list[str] = []
        self._staging = InBackground(self._stage_block, waiting=2, name="blob-upload")
        self._closed = False
        self._aborted = False
        self.bytes_written = 0

    def _stage_block(self, block: tuple[str, bytes]) -> None:
        block_id, data = block
        try:
            self._client.stage_block(block_id, data, length=len(data))
        except Exception as error:  # raised in the writer's thread, naming the blob
            raise RuntimeError(f"Upload of {self._client.blob_name} failed: {error}") from error

    def _send(self, data: bytes) -> None:
        import base64

        # Block ids must all have the same length: a zero-padded counter.
        block_id = base64.b64encode(f"{len(self._block_ids):08d}".encode()).decode()
        self._block_ids.append(block_id)
        self._staging.put((block_id, data))

    def write(self, data) -> int:
        if self._aborted:
            # Discarded: a stream wrapping this one (compression) flushes on its way out, and
            # the error that stopped the upload is the one to report.
            return len(data)
        if self._closed:
            raise ValueError(f"write to {self._client.blob_name} after its upload was closed")
        self._buffer += data
        self.bytes_written += len(data)
        if len(self._buffer) >= self._block_bytes:
            self._send(bytes(self._buffer))
            self._buffer.clear()
        return len(data)

    def writable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._closed

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._buffer:
                self._send(bytes(self._buffer))
                self._buffer.clear()
            self._staging.close()
        except BaseException:
            self._staging.cancel()
            raise
        from azure.storage.blob import BlobBlock

        self._client.commit_block_list(
            [BlobBlock(block_id=b) for b in self._block_ids], metadata=self._metadata
        )
        log.info(
            "Uploaded %s/%s: %d bytes in %d block(s)",
            self._client.container_name,
            self._client.blob_name,
            self.bytes_written,
            len(self._block_ids),
        )

    def abort(self) -> None:
        """Stop without committing: the staged blocks are never made into a blob."""
        self._aborted = True
        if not self._closed:
            self._closed = True
            self._staging.cancel()

    def __enter__(self) -> StreamingUpload:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
