"""The event API's core: validation (`schemas`), storage (`store`) and application (`apply`)."""
