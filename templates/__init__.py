"""jinja2 templates: patient messages per language and channel, and the staff pages."""
