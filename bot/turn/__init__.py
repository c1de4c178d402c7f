"""One conversational turn as a list of steps, in the order they apply (see `steps.run`)."""
