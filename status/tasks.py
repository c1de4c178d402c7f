"""Patient tasks: what the patient must do (upload ID, finish intake, update a card, ...)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Enum, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from status import limits
from status.classification import StatusClass, classify_all
from status.db import Base
from status.items import TrackedItem


class TaskStatus(StrEnum):
    OPEN = "open"
    DONE = "done"


CLASSES = classify_all(
    TaskStatus, {TaskStatus.OPEN: StatusClass.NEEDS_PATIENT, TaskStatus.DONE: StatusClass.TERMINAL}
)


class Task(TrackedItem, Base):
    __tablename__ = "tasks"

    kind: Mapped[str] = mapped_column(String(limits.TASK_KIND))
    title: Mapped[str] = mapped_column(String(limits.TASK_TITLE))
    status: Mapped[TaskStatus] = mapped_column(
        Enum(
            TaskStatus, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
        )
    )
    url: Mapped[str | None] = mapped_column(String(limits.URL))
    due_at: Mapped[datetime | None]

    @property
    def status_class(self) -> StatusClass:
        return CLASSES[self.status]


# What the snapshot shows (one definition for the tables and the read model): open, oldest first.
SNAPSHOT_FILTER = Task.status == TaskStatus.OPEN
SNAPSHOT_ORDER = (Task.status_since, Task.id)


def open_for(session: Session, patient_id: int) -> list[Task]:
    query = select(Task).where(Task.patient_id == patient_id, SNAPSHOT_FILTER)
    return list(session.scalars(query.order_by(*SNAPSHOT_ORDER)))
