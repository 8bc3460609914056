"""The backends that ship with chathistory: ``memory`` (the fake) and ``sqlite`` (the default)."""
