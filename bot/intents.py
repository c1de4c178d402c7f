"""The intents the assistant understands; the names are part of the fixed contract."""

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


# Intents that carry no request of their own: kept only when nothing substantive was found.
SOCIAL_INTENTS = frozenset({Intent.GREETING, Intent.THANKS})
