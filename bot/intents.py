"""The intents the assistant understands; the names are part of the fixed contract."""

from collections.abc import Sequence
from enum import StrEnum


class Intent(StrEnum):
    PRESCRIPTION_STATUS = "prescription_status"
    SHIPMENT_TRACKING = "shipment_tracking"
    REFILL = "refill"
    BILLING = "billing"
    UPDATE_PAYMENT_METHOD = "update_payment_method"
    CANCEL_SUBSCRIPTION = "cancel_subscription"
    APPOINTMENT = "appointment"
    RESCHEDULE = "reschedule"
    NEXT_STEPS = "next_steps"
    HUMAN = "human"
    CLINICAL_QUESTION = "clinical_question"
    EMERGENCY = "emergency"
    GREETING = "greeting"
    THANKS = "thanks"
    HELP = "help"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    UNKNOWN = "unknown"


# Intents that carry no request of their own: beside a request, only a courtesy written as its
# own clause before it ("hi, where is my package") is kept, and the request stays primary.
SOCIAL_INTENTS = frozenset({Intent.GREETING, Intent.THANKS})
NO_REQUEST = SOCIAL_INTENTS | {Intent.UNKNOWN}  # intents that ask for nothing


def asks_something(intents: Sequence[str]) -> bool:
    return any(i not in NO_REQUEST for i in intents)


def primary(intents: Sequence[str]) -> str:
    """The intent the engine answers, of intents in written order: an emergency wherever it
    is, else the first that asks something (not a courtesy), else the first."""
    if Intent.EMERGENCY in intents:
        return str(Intent.EMERGENCY)
    return next((i for i in intents if i not in SOCIAL_INTENTS), intents[0])
