"""Proactive updates: tell the patient before they have to ask.

`rules` says which state changes are worth a message (and which template says it), `policy`
decides when and where it goes (consent, coalescing, quiet hours, caps, channel), `scheduler`
adds time-driven reminders and stuck detection.
"""
