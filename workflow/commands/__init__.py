"""One module per `ddcicd` command; each imports its heavy dependencies inside the command."""
