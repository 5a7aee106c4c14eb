"""Evaluate Lambda: `app.handler` scores the staging endpoint on the validation set."""
