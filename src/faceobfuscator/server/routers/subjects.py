"""Subjects and their templates: administrator keys only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from faceobfuscator.server.deps import get_service, payload_for, require
from faceobfuscator.server.keys import Role
from faceobfuscator.server.routers._common import PAYLOAD_BODY, errors
from faceobfuscator.server.schemas import (
    SubjectIn,
    SubjectList,
    SubjectName,
    SubjectOut,
    TemplateList,
    TemplateOut,
)
from faceobfuscator.server.service import GalleryService
from faceobfuscator.server.storage import SubjectRecord

router = APIRouter(
    prefix="/v1/subjects",
    tags=["subjects"],
    dependencies=[Depends(require(Role.ADMIN))],
    responses=errors(401, 403),
)

Service = Annotated[GalleryService, Depends(get_service)]
Subject = Annotated[SubjectName, Path()]


def _out(record: SubjectRecord) -> SubjectOut:
    created = datetime.fromtimestamp(record.created_at, tz=UTC)
    return SubjectOut(subject=record.name, created_at=created, templates=record.n_templates)


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=SubjectOut, responses=errors(409)
)
def create_subject(body: SubjectIn, service: Service) -> SubjectOut:
    return _out(service.create_subject(body.subject))


@router.get("", response_model=SubjectList)
def list_subjects(
    service: Service,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> SubjectList:
    records = service.list_subjects(limit=limit, offset=offset)
    total, _ = service.storage.count()
    return SubjectList(subjects=[_out(r) for r in records], total=total, limit=limit, offset=offset)


@router.get("/{subject}", response_model=SubjectOut, responses=errors(404))
def get_subject(subject: Subject, service: Service) -> SubjectOut:
    return _out(service.get_subject(subject))


@router.delete("/{subject}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
def delete_subject(subject: Subject, service: Service) -> Response:
    """Erase the subject, its templates and their cached embeddings, in the database and
    in every API process's memory."""
    service.delete_subject(subject)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{subject}/templates",
    status_code=status.HTTP_201_CREATED,
    response_model=TemplateOut,
    openapi_extra=PAYLOAD_BODY,
    responses=errors(404, 409, 413, 415, 422),
)
def enrol(
    subject: Subject, payload: Annotated[bytes, Depends(payload_for("enroll"))], service: Service
) -> TemplateOut:
    """Enrol one payload for the subject; nothing is stored unless it is valid."""
    done = service.enrol(subject, payload)
    return TemplateOut(subject=done.subject, template_id=done.template_id)


@router.get("/{subject}/templates", response_model=TemplateList, responses=errors(404))
def list_templates(subject: Subject, service: Service) -> TemplateList:
    return TemplateList(subject=subject, template_ids=service.template_ids(subject))


@router.delete(
    "/{subject}/templates/{template_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(404),
)
def delete_template(subject: Subject, template_id: int, service: Service) -> Response:
    service.delete_template(subject, template_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
