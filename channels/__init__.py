"""The edges: Twilio SMS, Telegram, staff console, simulator, outbox dispatcher, HTTP app."""
