"""``POST /predict`` (one image) and ``POST /predict/batch`` (several, answered in order with
per-image errors). Both call :class:`service.pipeline.Inference`; this module only reads the
uploads within their byte limit and shapes the answers.

``/predict`` takes the image as the multipart field ``file`` or, for programmatic clients, as
the whole request body (``Content-Type: image/...`` or ``application/octet-stream``): the same
answers, limits and errors either way (the format is read from the bytes, never the type)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter

from service.deps import (
    ChannelParam,
    IncludeParam,
    InferenceDep,
    SamplesParam,
    SettingsDep,
    client_source,
    require_api_key,
)
from service.edge.limits import is_raw_image
from service.error_handlers import ERROR_RESPONSES, status_for
from service.errors import ImageRejected, RejectedElement, TooManyFiles
from service.pipeline import Answer
from service.schemas import BatchErrorOut, Include, PredictionOut

router = APIRouter(tags=["predict"], dependencies=[Depends(require_api_key)], responses=ERROR_RESPONSES)


BATCH_ANSWER = TypeAdapter(list[PredictionOut | BatchErrorOut])


def prediction_out(answer: Answer, include: Include, filename: str | None = None) -> PredictionOut:
    fields = dict(vars(answer.prediction))  # shallow: asdict's deep copy cost more than the rest of this
    seen = fields.pop("seen")
    image = seen.tolist() if include.input and seen is not None else None
    return PredictionOut(**{"class": fields.pop("digit")}, **fields, audit=answer.audit,
                         review_id=answer.review_id, filename=filename, input=image)


def json_answer(content: bytes) -> Response:
    """An answer serialized here, once: returning the model would have FastAPI validate it again."""
    return Response(content, media_type="application/json")


RAW_MEDIA_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp", "image/gif", "application/octet-stream")
RAW_BODY_DOC = {"requestBody": {"required": True, "content": {
    media: {"schema": {"type": "string", "format": "binary",
                       "description": "the image file itself as the body (any image/* type is read the same way: "
                                      "the format comes from the bytes)"}}
    for media in RAW_MEDIA_TYPES}}}
MISSING_FILE = ("Field required: send the image as multipart/form-data field 'file', or as the whole body with "
                "Content-Type image/* or application/octet-stream")


async def read_upload(request: Request, file: UploadFile | None, max_bytes: int) -> bytes:
    """The one image of a /predict request, multipart or raw body; at most ``max_bytes`` + 1 bytes
    of a multipart file are read (one byte over is enough to refuse)."""
    if file is not None:
        sent = len((await request.form()).getlist("file"))  # parsed once already; this reads the cache
        if sent > 1:
            raise TooManyFiles(f"{sent} files sent in field 'file'; send one, or use /predict/batch for several")
        return await file.read(max_bytes + 1)
    if is_raw_image(request.headers.get("content-type", "")):
        return await request.body()  # bounded by the request body limit (BodyLimitMiddleware)
    raise RequestValidationError([{"type": "missing", "loc": ("body", "file"), "msg": MISSING_FILE, "input": None}])


@router.post("/predict", response_model=PredictionOut, response_model_by_alias=True,
             response_model_exclude={"filename"}, openapi_extra=RAW_BODY_DOC)
async def predict(request: Request, inference: InferenceDep, settings: SettingsDep, include: IncludeParam,
                  samples: SamplesParam = None, channel: ChannelParam = "file",
                  file: Annotated[UploadFile | None, File(description="the digit image (or send it as the raw body)")]
                  = None) -> Response:
    """Classify one image: the class, its uncertainty, and whether a human should look instead. Send it
    as the multipart field `file`, or as the whole request body with `Content-Type: image/png`
    (`image/jpeg`, ... or `application/octet-stream`)."""
    data = await read_upload(request, file, settings.max_upload_bytes)
    try:
        answer = (await inference.answer_all([data], samples, include.spread, channel, client_source(request)))[0]
    except RejectedElement as rejected:
        raise rejected.error from None
    shaped = prediction_out(answer, include)
    return json_answer(shaped.model_dump_json(by_alias=True, exclude={"filename"} | include.excluded()).encode())


@router.post("/predict/batch", response_model=list[PredictionOut | BatchErrorOut], response_model_by_alias=True)
async def predict_batch(request: Request,
                        files: Annotated[list[UploadFile], File(description="digit images, in order")],
                        inference: InferenceDep, settings: SettingsDep, include: IncludeParam,
                        samples: SamplesParam = None, channel: ChannelParam = "file") -> Response:
    """Classify several images in one pass; a bad image gets its own error entry in its place."""
    if len(files) > settings.max_batch_files:
        raise TooManyFiles(f"{len(files)} files sent; at most {settings.max_batch_files} per request")
    uploads = [await upload.read(settings.max_upload_bytes + 1) for upload in files]
    results = await inference.answer_each(uploads, samples, include.spread, channel, client_source(request))
    answers = [BatchErrorOut(filename=upload.filename, status=status_for(result), reason=result.reason,
                             detail=str(result))
               if isinstance(result, ImageRejected) else
               prediction_out(result, include, upload.filename)
               for upload, result in zip(files, results, strict=True)]
    return json_answer(BATCH_ANSWER.dump_json(answers, by_alias=True, exclude={"__all__": include.excluded()}))
