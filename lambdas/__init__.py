"""Lambda handlers, each deployable as a zip. Never imports `workflow`."""
