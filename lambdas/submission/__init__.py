"""Assemble Kaggle's submission.csv from a Batch Transform's .out files."""
