"""Code that runs inside jobs (processing, training, serving). Never imports `workflow`."""
