"""one caregiver per address for a patient: duplicates merged, then a unique index

Revision ID: 0012_one_caregiver_per_address
Revises: 0011_clinic_work_indexes

Adding a caregiver twice (a redelivered API call, the console's form sent again) made two rows,
and every piece of news reached that phone twice. From now on adding them again finds the one
row (`caregivers.add`); this index makes a second row impossible, removed caregivers aside.

Rows already doubled are merged first. Of each patient's caregivers at one address the oldest
stays, with every topic any of them had, muted only where every row that had the topic muted it
(nobody loses news they were getting, nor gets news they turned off), and may ask if any of them
could; the others are marked removed, so what points at them (a status link) keeps working.
"""

from itertools import groupby

import sqlalchemy as sa
from alembic import op

from status import clock

revision = "0012_one_caregiver_per_address"
down_revision = "0011_clinic_work_indexes"
branch_labels = None
depends_on = None

ACTIVE = sa.text("removed_at IS NULL")
caregivers = sa.table(
    "caregivers",
    sa.column("id", sa.Integer()),
    sa.column("patient_id", sa.Integer()),
    sa.column("channel", sa.String()),
    sa.column("address", sa.String()),
    sa.column("topics", sa.JSON()),
    sa.column("muted", sa.JSON()),
    sa.column("may_ask", sa.Boolean()),
    sa.column("removed_at", sa.DateTime(timezone=True)),
)
KEY = (caregivers.c.patient_id, caregivers.c.channel, caregivers.c.address)


def _merge_duplicates(bind: sa.Connection) -> None:
    active = caregivers.c.removed_at.is_(None)
    doubled = sa.select(*KEY).where(active).group_by(*KEY).having(sa.func.count() > 1).subquery()
    rows = bind.execute(
        sa.select(caregivers)
        .join(doubled, sa.and_(*(column == doubled.c[column.name] for column in KEY)))
        .where(active)
        .order_by(*KEY, caregivers.c.id)
    ).all()
    now = clock.now()
    for _, same in groupby(rows, key=lambda row: (row.patient_id, row.channel, row.address)):
        kept, *others = group = list(same)
        topics = list(dict.fromkeys(topic for row in group for topic in row.topics))
        received = {t for row in group for t in row.topics if t not in row.muted}
        bind.execute(
            sa.update(caregivers)
            .where(caregivers.c.id == kept.id)
            .values(
                topics=topics,
                muted=[t for t in topics if t not in received],
                may_ask=any(row.may_ask for row in group),
            )
        )
        bind.execute(
            sa.update(caregivers)
            .where(caregivers.c.id.in_([row.id for row in others]))
            .values(removed_at=now)
        )


def upgrade() -> None:
    _merge_duplicates(op.get_bind())
    op.create_index(
        "ix_caregivers_patient_id_channel_address",
        "caregivers",
        ["patient_id", "channel", "address"],
        unique=True,
        postgresql_where=ACTIVE,
        sqlite_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("ix_caregivers_patient_id_channel_address", table_name="caregivers")
