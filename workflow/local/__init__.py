"""Local stand-ins for the AWS services the pipeline uses: jobs, endpoints, the runtime."""
