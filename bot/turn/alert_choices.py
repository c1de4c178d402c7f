"""Step 2c: alert choices short of STOP ("stop reminders", "only urgent", "what alerts do I
get?"). They disclose nothing, so no date of birth is asked; they apply to every patient whose
own address this is, or to the caregiver writing (their topics)."""

from __future__ import annotations

from bot.turn.context import TurnContext
from bot.understanding.alert_requests import AlertRequest, read
from status import alerts, timeline
from status.alerts import TOPICS, Topic
from status.patients import Patient


def alert_choice(t: TurnContext) -> bool:
    if t.inbound.origin == "page" or t.conv.opted_out:
        return False
    request = read(t.text)
    if request is None or not (t.own_people or t.carers):
        return False
    if t.own_people:
        for person in t.own_people:
            _apply(t, person, request)
        first = t.own_people[0]
        muted, only_urgent = alerts.muted_topics(t.session, first.clinic_id, first.id)
        t.patient = t.patient or t.own_people[0]
    else:
        for carer in t.carers:
            muted_now = _caregiver_muted({Topic(x) for x in carer.muted}, request)
            carer.muted = [x.value for x in TOPICS if x in muted_now]
        muted = set(TOPICS) - {Topic(x) for x in t.carers[0].active_topics}
        only_urgent = False
    on = [x.value for x in TOPICS if x not in muted]
    off = [x.value for x in TOPICS if x in muted]
    template = "alerts_status" if request.kind == "ask" else "alerts_updated"
    t.say(template, on=on, off=off, only_urgent=only_urgent, changed=sorted(request.topics))
    return True


def _apply(t: TurnContext, patient: Patient, request: AlertRequest) -> None:
    if request.kind == "ask":
        return
    clinic_id, patient_id = patient.clinic_id, patient.id
    if request.kind == "mute":
        alerts.update(t.session, clinic_id, patient_id, now=t.now, mute=set(request.topics))
    elif request.kind == "unmute":
        alerts.update(t.session, clinic_id, patient_id, now=t.now, unmute=set(request.topics),
                      only_urgent=False)  # fmt: skip
    elif request.kind == "only_urgent":
        alerts.update(t.session, clinic_id, patient_id, now=t.now, only_urgent=True)
    elif request.kind == "all_on":
        alerts.update(
            t.session, clinic_id, patient_id, now=t.now, unmute=set(TOPICS), only_urgent=False
        )
    timeline.record(
        t.session, patient_id, kind=timeline.EntryKind.PATIENT_ACTION, occurred_at=t.now,
        summary=f"alerts by {t.inbound.channel}: {request.kind} "
        f"{', '.join(sorted(request.topics))}".rstrip(),
        changes={"action": "alerts"},
    )  # fmt: skip


def _caregiver_muted(muted: set[Topic], request: AlertRequest) -> set[Topic]:
    """A caregiver turns off and back on within the topics staff chose for them."""
    if request.kind == "mute":
        return muted | set(request.topics)
    if request.kind == "unmute":
        return muted - set(request.topics)
    if request.kind == "all_on":
        return set()
    return muted
