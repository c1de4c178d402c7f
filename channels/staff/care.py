"""`/staff/patients/{id}/…`: make or revoke a status-page link, and add or remove a caregiver,
for a patient of the clinic the console shows. The link's address is shown once, on the page
the POST returns (only its hash is kept)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import Response

from channels.staff.models import audit
from channels.staff.pages import StaffRoute, redirect
from channels.staff.routes import patient_view
from channels.staff.security import Staff, csrf_protected, current_staff, flash
from status import caregivers, links, patients
from status.caregivers import Added, CaregiverProblem
from status.db import utcnow

router = APIRouter(prefix="/staff", route_class=StaffRoute, include_in_schema=False)
ADDED = {
    Added.NEW: "{name} added as a caregiver.",
    Added.UPDATED: "{name} was already a caregiver at that address: their details are updated.",
    Added.UNCHANGED: "{name} is already a caregiver at that address: nothing changed.",
}


def _base(request: Request) -> str:
    return request.app.state.settings.public_base_url or str(request.base_url)


@router.post("/patients/{patient_id}/status-link", dependencies=[Depends(csrf_protected)])
def make_status_link(
    patient_id: str, request: Request, staff: Staff = Depends(current_staff)
) -> Response:
    settings = request.app.state.settings
    new_link = None
    with request.app.state.db.session() as session:
        patient = patients.by_source_id(session, staff.clinic_id, patient_id)
        if patient is not None:
            issued = links.issue(
                session, patient, hours=settings.status_link_hours, now=utcnow(),
                created_by=f"staff:{staff.id}",
            )  # fmt: skip
            new_link = {"url": links.url(_base(request), issued.token),
                        "expires_at": issued.link.expires_at}  # fmt: skip
            audit(session, "status link made", clinic_id=patient.clinic_id, staff_id=staff.id,
                  patient_id=patient.id, detail=f"status link #{issued.link.id}")  # fmt: skip
    return patient_view(request, staff, patient_id, 201 if new_link else 404, new_link=new_link)


@router.post(
    "/patients/{patient_id}/status-links/{link_id}/revoke", dependencies=[Depends(csrf_protected)]
)
def revoke_status_link(
    patient_id: str,
    request: Request,
    link_id: int = Path(ge=1, le=2**31 - 1),
    staff: Staff = Depends(current_staff),
) -> Response:
    """The link stops opening at once (a lost phone, sent to the wrong person)."""
    with request.app.state.db.session() as session:
        patient = patients.by_source_id(session, staff.clinic_id, patient_id)
        link = links.by_id(session, staff.clinic_id, link_id)
        if patient is None or link is None or link.patient_id != patient.id:
            problem = f"There is no status link #{link_id} for this patient."
            return patient_view(request, staff, patient_id, 404, problem=problem)
        if link.revoked_at is None:
            links.revoke(link, utcnow())
            audit(session, "status link revoked", clinic_id=patient.clinic_id, staff_id=staff.id,
                  patient_id=patient.id, detail=f"status link #{link.id}")  # fmt: skip
    flash(request, f"Status link #{link_id} revoked: it no longer opens.")
    return redirect(f"/staff/patients/{patient_id}#status-page")


@router.post("/patients/{patient_id}/caregivers", dependencies=[Depends(csrf_protected)])
def add_caregiver(
    patient_id: str,
    request: Request,
    staff: Staff = Depends(current_staff),
    name: str = Form("", max_length=200),
    relation: str = Form("", max_length=200),
    channel: str = Form("sms", max_length=16),
    address: str = Form("", max_length=64),
    topics: list[str] = Form([]),
    may_ask: str = Form(""),
) -> Response:
    with request.app.state.db.session() as session:
        patient = patients.by_source_id(session, staff.clinic_id, patient_id)
        if patient is None:
            return patient_view(request, staff, patient_id)
        try:
            carer, added = caregivers.add(
                session, patient, name=name, relation=relation, channel=channel,
                address=address, topics=topics, may_ask=bool(may_ask), now=utcnow(),
                created_by=f"staff:{staff.id}",
            )  # fmt: skip
        except CaregiverProblem as exc:
            problem = f"Caregiver not added: {exc.message}."
        else:
            problem = None
            if added != Added.UNCHANGED:
                audit(session, f"caregiver {'added' if added == Added.NEW else 'updated'}",
                      clinic_id=patient.clinic_id, staff_id=staff.id, patient_id=patient.id,
                      detail=f"caregiver #{carer.id} ({carer.relation})")  # fmt: skip
            done = ADDED[added].format(name=carer.name)
    if problem:
        return patient_view(request, staff, patient_id, 422, problem=problem)
    flash(request, done)
    return redirect(f"/staff/patients/{patient_id}#caregivers")


@router.post(
    "/patients/{patient_id}/caregivers/{caregiver_id}/remove",
    dependencies=[Depends(csrf_protected)],
)
def remove_caregiver(
    patient_id: str,
    request: Request,
    caregiver_id: int = Path(ge=1, le=2**31 - 1),
    staff: Staff = Depends(current_staff),
) -> Response:
    with request.app.state.db.session() as session:
        patient = patients.by_source_id(session, staff.clinic_id, patient_id)
        carer = caregivers.by_id(session, staff.clinic_id, caregiver_id)
        if patient is not None and carer is not None and carer.patient_id == patient.id:
            caregivers.remove(carer, utcnow())
            audit(session, "caregiver removed", clinic_id=patient.clinic_id, staff_id=staff.id,
                  patient_id=patient.id, detail=f"caregiver #{carer.id}")  # fmt: skip
            flash(request, "Caregiver removed: they get no more updates.")
    return redirect(f"/staff/patients/{patient_id}#caregivers")
