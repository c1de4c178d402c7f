"""The live state of each patient's care: domain model, event API, snapshot, database."""
