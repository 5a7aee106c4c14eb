"""The reaper Lambda: deletes the staging endpoints of abandoned faulted executions."""
