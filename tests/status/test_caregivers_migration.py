"""0012_one_caregiver_per_address on a database where a caregiver was added twice (before adding
became idempotent): the rows are merged into the oldest, nobody's news changes, and the unique
index then keeps a second row out."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from status import demo, patients
from status.caregivers import Caregiver
from status.clinics import DEFAULT_ID
from status.migrate import alembic_config, upgrade
from tests.conftest import on_both_databases
from tests.harness import NOW

PREVIOUS = "0011_clinic_work_indexes"
ANA = "+15550100099"


def caregiver_row(patient_id: int, **values) -> dict:
    return {
        "clinic_id": DEFAULT_ID, "patient_id": patient_id, "name": "Ana", "relation": "sister",
        "channel": "sms", "address": ANA, "topics": ["shipping"], "muted": [], "may_ask": False,
        "created_at": NOW, "created_by": "api", "removed_at": None, **values,
    }  # fmt: skip


@on_both_databases
def test_a_caregiver_added_twice_is_merged_into_one_that_gets_the_same_news(database):
    command.downgrade(alembic_config(database.url), PREVIOUS)
    with database.session() as session:
        demo.seed(session)
        sofia = patients.by_source_id(session, DEFAULT_ID, "demo-sofia")
        maria = patients.by_source_id(session, DEFAULT_ID, "demo-maria")
        assert sofia is not None and maria is not None
        sofia_id = sofia.id
        rows = [
            # she turned billing off on the first; staff added her again with other topics
            caregiver_row(sofia.id, topics=["shipping", "billing"], muted=["billing"]),
            caregiver_row(
                sofia.id, topics=["billing", "appointments"], muted=["appointments"], may_ask=True
            ),
            caregiver_row(sofia.id, removed_at=NOW),  # removed long ago: stays as it is
            caregiver_row(maria.id),  # the same phone for another patient is another caregiver
        ]
        ids = [session.execute(insert(Caregiver).values(row)).inserted_primary_key[0]
               for row in rows]  # fmt: skip
    upgrade(database.url)
    with database.session() as session:
        found = {c.id: c for c in session.scalars(select(Caregiver))}
        kept, merged, removed, marias = (found[i] for i in ids)
        assert kept.removed_at is None
        assert (kept.topics, kept.active_topics, kept.may_ask) == (
            ["shipping", "billing", "appointments"], ["shipping", "billing"], True,
        )  # fmt: skip
        assert merged.removed_at is not None
        assert removed.removed_at is not None and removed.topics == ["shipping"]
        assert (marias.removed_at, marias.topics) == (None, ["shipping"])
        with pytest.raises(IntegrityError), session.begin_nested():
            session.execute(insert(Caregiver).values(caregiver_row(sofia_id)))
