"""The synthetic dataset generator and data helpers. Never imports `workflow`."""
