"""The clinic's side of the status page and caregivers (Bearer key): make a status-page link to
send through their own channels, or revoke the patient's links; add, list and remove a
patient's caregivers. Every call stays in the key's clinic: another clinic's patient is 404,
as an unknown one."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from channels import openapi
from channels.api import _patient
from channels.deps import get_session, require_api_key
from status import caregivers, links
from status.caregivers import Added, CaregiverProblem
from status.db import utcnow

router = APIRouter()


class CaregiverIn(BaseModel):
    name: str = Field(max_length=200)
    relation: str = Field(max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    telegram_chat_id: str | None = Field(default=None, max_length=40)
    topics: list[str] = Field(default_factory=list, max_length=10)
    may_ask_questions: bool = False


def public_base(request: Request) -> str:
    return request.app.state.settings.public_base_url or str(request.base_url)


@router.post(
    "/api/patients/{patient_id}/status-link",
    status_code=201,
    responses={**openapi.API, **openapi.NOT_FOUND},
)
def status_link(
    patient_id: str,
    request: Request,
    clinic_id: int = Depends(require_api_key),
    session: Session = Depends(get_session, scope="function"),
) -> dict:
    """A new status-page link for the patient: `{"url": ".../s/TOKEN", "expires_at": ...}`."""
    patient = _patient(session, clinic_id, patient_id)
    hours = request.app.state.settings.status_link_hours
    issued = links.issue(session, patient, hours=hours, now=utcnow(), created_by="api")
    return {
        "url": links.url(public_base(request), issued.token),
        "expires_at": issued.link.expires_at.isoformat(),
    }


@router.delete(
    "/api/patients/{patient_id}/status-links",
    responses={**openapi.API, **openapi.NOT_FOUND},
)
def revoke_status_links(
    patient_id: str,
    clinic_id: int = Depends(require_api_key),
    session: Session = Depends(get_session, scope="function"),
) -> dict:
    """Revoke every link of the patient that still opens: `{"revoked": n}` (0 when none)."""
    patient = _patient(session, clinic_id, patient_id)
    return {"revoked": links.revoke_all(session, clinic_id, patient.id, utcnow())}


@router.post(
    "/api/patients/{patient_id}/caregivers",
    status_code=201,
    responses={
        200: {"description": "Already this patient's caregiver at that address: updated to "
              "what was sent, or unchanged (a repeated request); never a second caregiver"},
        **openapi.API, **openapi.NOT_FOUND, **openapi.BAD_REQUEST,
    },
)  # fmt: skip
def add_caregiver(
    patient_id: str,
    body: CaregiverIn,
    response: Response,
    clinic_id: int = Depends(require_api_key),
    session: Session = Depends(get_session, scope="function"),
) -> dict:
    """Add a caregiver: `phone` (SMS) or `telegram_chat_id`, the topics they receive
    (shipping, billing, appointments, refills, delays) and whether they may ask questions.
    They are the patient's clinic's: texted from, and writing to, its number or bot.
    201 when added; 200 when they were already the patient's caregiver at that phone or chat
    (their name, relation, topics and may-ask are set to what was sent)."""
    patient = _patient(session, clinic_id, patient_id)
    if bool(body.phone) == bool(body.telegram_chat_id):
        raise HTTPException(422, "give exactly one of phone or telegram_chat_id")
    try:
        carer, added = caregivers.add(
            session, patient, name=body.name, relation=body.relation,
            channel="sms" if body.phone else "telegram",
            address=body.phone or body.telegram_chat_id or "", topics=body.topics,
            may_ask=body.may_ask_questions, now=utcnow(), created_by="api",
        )  # fmt: skip
    except CaregiverProblem as exc:
        raise HTTPException(422, f"{exc.field}: {exc.message}") from exc
    if added != Added.NEW:
        response.status_code = 200
    return carer.to_dict()


@router.get(
    "/api/patients/{patient_id}/caregivers",
    responses={**openapi.API, **openapi.NOT_FOUND},
)
def list_caregivers(
    patient_id: str,
    clinic_id: int = Depends(require_api_key),
    session: Session = Depends(get_session, scope="function"),
) -> dict:
    patient = _patient(session, clinic_id, patient_id)
    found = caregivers.for_patient(session, clinic_id, patient.id)
    return {"caregivers": [c.to_dict() for c in found]}


@router.delete(
    "/api/patients/{patient_id}/caregivers/{caregiver_id}",
    responses={**openapi.API, **openapi.NOT_FOUND},
)
def remove_caregiver(
    patient_id: str,
    caregiver_id: int = Path(ge=1, le=2**31 - 1),
    clinic_id: int = Depends(require_api_key),
    session: Session = Depends(get_session, scope="function"),
) -> dict:
    patient = _patient(session, clinic_id, patient_id)
    carer = caregivers.by_id(session, clinic_id, caregiver_id)
    if carer is None or carer.patient_id != patient.id or carer.removed_at is not None:
        raise HTTPException(404, f"no caregiver {caregiver_id} for this patient")
    caregivers.remove(carer, utcnow())
    return {"removed": caregiver_id}
