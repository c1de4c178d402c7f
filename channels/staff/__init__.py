"""The staff console: login, queue, hand-off pages, operations view."""
