"""``POST /predict`` (one image) and ``POST /predict/batch`` (several, answered in order with
per-image errors). Both call :class:`service.inference.Inference`; this module only reads the
uploads within their byte limit and shapes the answers."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, File, Request, UploadFile

from service.deps import InferenceDep, SamplesParam, SettingsDep, require_api_key
from service.errors import ERROR_RESPONSES, TooManyFiles, status_for
from service.predictor import Prediction
from service.preprocess import ImageRejected
from service.schemas import BatchErrorOut, PredictionOut

router = APIRouter(tags=["predict"], dependencies=[Depends(require_api_key)], responses=ERROR_RESPONSES)


def prediction_out(prediction: Prediction, audit: bool, model_version: str, filename: str | None = None) -> PredictionOut:
    fields = asdict(prediction)
    return PredictionOut(**{"class": fields.pop("digit")}, **fields, audit=audit, model_version=model_version,
                         filename=filename)


@router.post("/predict", response_model=PredictionOut, response_model_by_alias=True, response_model_exclude={"filename"})
async def predict(request: Request, file: Annotated[UploadFile, File(description="the digit image")],
                  inference: InferenceDep, settings: SettingsDep, samples: SamplesParam = None) -> PredictionOut:
    """Classify one image: the class, its uncertainty, and whether a human should look instead."""
    sent = len((await request.form()).getlist("file"))  # parsed once already; this reads the cache
    if sent > 1:
        raise TooManyFiles(f"{sent} files sent in field 'file'; send one, or use /predict/batch for several")
    data = await file.read(settings.max_upload_bytes + 1)  # one byte over is enough to refuse
    result = (await inference.classify([data], samples))[0]
    if isinstance(result, ImageRejected):
        raise result
    return prediction_out(result, inference.account(result), inference.model_version)


@router.post("/predict/batch", response_model=list[PredictionOut | BatchErrorOut], response_model_by_alias=True)
async def predict_batch(files: Annotated[list[UploadFile], File(description="digit images, in order")],
                        inference: InferenceDep, settings: SettingsDep,
                        samples: SamplesParam = None) -> list[PredictionOut | BatchErrorOut]:
    """Classify several images in one pass; a bad image gets its own error entry in its place."""
    if len(files) > settings.max_batch_files:
        raise TooManyFiles(f"{len(files)} files sent; at most {settings.max_batch_files} per request")
    uploads = [await upload.read(settings.max_upload_bytes + 1) for upload in files]
    answers: list[PredictionOut | BatchErrorOut] = []
    for upload, result in zip(files, await inference.classify(uploads, samples), strict=True):
        if isinstance(result, ImageRejected):
            inference.metrics.record_rejection(result.reason)
            answers.append(BatchErrorOut(filename=upload.filename, status=status_for(result), reason=result.reason,
                                         detail=str(result)))
        else:
            answers.append(prediction_out(result, inference.account(result), inference.model_version, upload.filename))
    return answers
