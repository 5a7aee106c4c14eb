"""A local Step Functions engine: ASL (JSONPath and JSONata) with persisted history, redrive and pluggable Tasks.

The public names are few: `Engine` (the API), the clocks, the errors a caller catches, the
error and status names (`ErrorName`, `ExecutionStatus`), and the integration building blocks
for plugging in more Task resources.
"""
from workflow.engine.clock import SystemClock, VirtualClock
from workflow.engine.errors import DefinitionError, EngineError, ErrorName, StatesError
from workflow.engine.history import ExecutionStatus
from workflow.engine.integrations import FunctionRegistry, TaskContext
from workflow.engine.jobs import JobIntegration
from workflow.engine.service import Engine

__all__ = [
    "DefinitionError",
    "Engine",
    "EngineError",
    "ErrorName",
    "ExecutionStatus",
    "FunctionRegistry",
    "JobIntegration",
    "StatesError",
    "SystemClock",
    "TaskContext",
    "VirtualClock",
]
