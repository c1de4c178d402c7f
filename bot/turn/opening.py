"""What a turn reads before its steps, in one statement: the address's conversation (created on
first contact), the clinic's patients whose own address it is, the caregivers writing from it,
the open hand-offs that could own the conversation (the conversation's, each of those
patients'), whether a status-page link was made for them since `since`, and their read-model
rows (`status.read_model`).

One statement instead of five, each of which cost more in SQLAlchemy's per-statement Python
than in the database. It is read without an autoflush: nothing it reads is written by a turn
without a flush of its own (a new conversation and a new hand-off are flushed as they are
made) or a stand-in (a link a turn makes waits for the batch's flush; `links.pending_since`
tells this read of it), so the earlier turns of a batch may keep their rows pending until the
batch's one flush (`TurnRunner.run_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import (
    Integer,
    Select,
    String,
    and_,
    bindparam,
    cast,
    exists,
    literal_column,
    select,
)
from sqlalchemy.orm import Session

from bot import conversations, handoffs
from bot.conversations import Conversation
from bot.handoffs import Handoff
from status import links
from status.caregivers import Caregiver
from status.links import StatusLink
from status.patients import Patient
from status.read_model import PatientSnapshot

T = TypeVar("T")


@dataclass
class Opening:
    conv: Conversation
    since: datetime  # of `linked_since`
    own_people: list[Patient]  # the patients whose own address it is (`patients.by_address`)
    carers: list[Caregiver]  # the caregivers writing from it (`caregivers.by_address`)
    # open_key -> the open hand-off, for the keys of the conversation and of every patient above
    # or looked after by the caregivers; a key read and absent has no open hand-off
    open_handoffs: dict[str, Handoff] = field(default_factory=dict)
    keys_read: set[str] = field(default_factory=set)
    # (patient id, caregiver id or None) -> whether a link was made for them since `since`
    linked_since: dict[tuple[int, int | None], bool] = field(default_factory=dict)
    # patient id -> their read-model row's text (`read_model`), for the patients above
    stored: dict[int, str] = field(default_factory=dict)


def _key(prefix: str, column: object) -> object:
    return literal_column(f"'{prefix}:'") + cast(column, String)


def _statement(
    wire: str,
) -> Select[Conversation, Patient, int, int, int, str, bool, bool, str]:
    own = Patient.telegram_chat_id if wire == "telegram" else Patient.phone
    clinic_id = bindparam("clinic_id", type_=Integer)
    address = bindparam("address", type_=String)
    since = bindparam("since", type_=StatusLink.created_at.type)
    carers_here = and_(
        Caregiver.clinic_id == clinic_id,
        Caregiver.channel == wire,
        Caregiver.address == address,
        Caregiver.removed_at.is_(None),
    )
    owns = Handoff.open_key.in_(
        [
            _key("conversation", Conversation.id),
            _key("patient", Patient.id),
            _key("patient", Caregiver.patient_id),
        ]
    )
    state = PatientSnapshot.__table__
    recent = and_(StatusLink.created_at >= since, StatusLink.revoked_at.is_(None))
    patient_linked = exists().where(
        StatusLink.clinic_id == clinic_id,
        StatusLink.patient_id == Patient.id,
        StatusLink.caregiver_id.is_(None),
        recent,
    )
    carer_linked = exists().where(
        StatusLink.clinic_id == Caregiver.clinic_id,
        StatusLink.patient_id == Caregiver.patient_id,
        StatusLink.caregiver_id == Caregiver.id,
        recent,
    )
    return (
        select(
            Conversation,
            Patient,
            Caregiver.id,
            Caregiver.patient_id,
            Handoff.id,
            Handoff.open_key,
            patient_linked,
            carer_linked,
            state.c.state,
        )
        .select_from(Conversation)
        .outerjoin(Patient, and_(Patient.clinic_id == clinic_id, own == address))
        .outerjoin(state, state.c.patient_id == Patient.id)
        .outerjoin(Caregiver, carers_here)
        .outerjoin(Handoff, owns)
        .where(
            Conversation.clinic_id == clinic_id,
            Conversation.channel == bindparam("channel"),
            Conversation.address == address,
        )
        .order_by(Patient.id, Caregiver.id, Handoff.id)
    )


# Built once per wire (the patient's own address is a phone or a Telegram chat): building a
# statement costs more than running it.
_READ = {wire: _statement(wire) for wire in ("sms", "telegram")}


def read(session: Session, clinic_id: int, channel: str, address: str, since: datetime) -> Opening:
    wire = "telegram" if channel == "telegram" else "sms"
    values = {"clinic_id": clinic_id, "channel": channel, "address": address, "since": since}
    with session.no_autoflush:
        rows = session.execute(_READ[wire], values).all()
    if not rows:  # first contact: create the conversation, then read as for any other
        conversations.get_or_create(session, clinic_id, channel, address)
        with session.no_autoflush:
            rows = session.execute(_READ[wire], values).all()
    conv = rows[0][0]
    people: dict[int, Patient] = {}
    carer_ids: set[int] = set()
    open_ids: dict[str, int] = {}
    opening = Opening(conv, since, [], [])
    opening.keys_read.add(handoffs.open_key(None, conv.id))
    for _, patient, carer_id, cared_for, handoff_id, open_key, *linked, stored in rows:
        patient_linked, carer_linked = linked
        if patient is not None:
            people[patient.id] = patient
            if stored is not None:
                opening.stored[patient.id] = stored
            opening.keys_read.add(handoffs.open_key(patient.id, conv.id))
            opening.linked_since[(patient.id, None)] = bool(patient_linked)
        if carer_id is not None:
            carer_ids.add(carer_id)
            opening.keys_read.add(handoffs.open_key(cared_for, conv.id))
            opening.linked_since[(cared_for, carer_id)] = bool(carer_linked)
        if handoff_id is not None and open_key is not None:
            open_ids[open_key] = handoff_id
    opening.own_people = list(people.values())
    for key in links.pending_since(session, since):  # an earlier turn's, not yet written
        opening.linked_since[key] = True
    # Caregivers and open hand-offs are rare beside a turn: their rows are read whole only
    # when there are any (by primary key, from the session when it holds them already), so the
    # common turn's statement carries two entities' columns, not four.
    for i in sorted(carer_ids):
        carer = _get(session, Caregiver, i)
        if carer is not None:
            opening.carers.append(carer)
    for i in open_ids.values():
        handoff = _get(session, Handoff, i)
        if handoff is not None and handoff.open_key is not None:  # as this transaction holds it
            opening.open_handoffs[handoff.open_key] = handoff
    return opening


def _get(session: Session, entity: type[T], ident: int) -> T | None:
    """A row the statement found, whole (None if it went since: neither kind is ever deleted,
    but a turn should not fail on it)."""
    with session.no_autoflush:
        return session.get(entity, ident)
