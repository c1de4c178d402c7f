"""Adapters from the systems clinics already run (FHIR servers, Stripe) onto our events."""
