"""`/v1/files`: upload (multipart, streamed to disk), list, retrieve, delete, content."""

from __future__ import annotations

from savegate.api.http import BytesResponse, HttpRequest, Response, json_response, query_params
from savegate.api.multipart import Upload, read_upload
from savegate.api.openai.listing import limit, page
from savegate.core.errors import InvalidRequest, NotFound
from savegate.core.keys import ApiKey
from savegate.service.files import FilesService
from savegate.wire.checks import one_of

MAX_LIST = 10_000
_ORDERS = ("asc", "desc")


async def create_file(request: HttpRequest, key: ApiKey, files: FilesService) -> Response:
    upload = await read_upload(request, files.writer, files.max_bytes)
    if upload.file is None:
        raise InvalidRequest("Missing required parameter: 'file'.", param="file")
    try:
        purpose = upload.fields.get("purpose")
        if not purpose:
            raise InvalidRequest("Missing required parameter: 'purpose'.", param="purpose")
        expires_after = _expires_after(upload)
    except InvalidRequest:
        await upload.file.discard()
        raise
    file = await files.save(key.id, upload.file, upload.filename, purpose, expires_after)
    return json_response(file.public())


def _expires_after(upload: Upload) -> int | None:
    anchor = upload.fields.get("expires_after[anchor]")
    seconds = upload.fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequest(
            "'expires_after.anchor' must be 'created_at'.", param="expires_after.anchor"
        )
    if seconds is None or not seconds.isdigit():
        raise InvalidRequest(
            "'expires_after.seconds' must be an integer.", param="expires_after.seconds"
        )
    return int(seconds)


async def list_files(request: HttpRequest, key: ApiKey, files: FilesService) -> Response:
    query = query_params(request)
    order = query.get("order", "desc")
    one_of(order, "order", _ORDERS)
    found, more = await files.browse(
        key.id,
        query.get("purpose"),
        limit(query, MAX_LIST, MAX_LIST),
        query.get("after"),
        "asc" if order == "asc" else "desc",
    )
    return json_response(page([file.public() for file in found], more))


def _file_id(request: HttpRequest, tail: str = "") -> str:
    """The id in `/v1/files/{id}` (or `/v1/files/{id}/content` when `tail` is `content`)."""
    file_id, _, rest = request.path.removeprefix("/v1/files/").partition("/")
    if rest != tail or not file_id:
        raise NotFound(f"Invalid URL ({request.method} {request.path})")
    return file_id


async def retrieve_file(request: HttpRequest, key: ApiKey, files: FilesService) -> Response:
    if request.path.endswith("/content"):
        file, chunks = await files.content(key.id, _file_id(request, "content"))
        return BytesResponse(chunks, file.bytes)
    return json_response((await files.get(key.id, _file_id(request))).public())


async def delete_file(request: HttpRequest, key: ApiKey, files: FilesService) -> Response:
    file_id = _file_id(request)
    await files.delete(key.id, file_id)
    return json_response({"id": file_id, "object": "file", "deleted": True})
