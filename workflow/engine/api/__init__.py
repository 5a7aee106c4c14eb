"""The local engine as a Step Functions service: AWS's JSON 1.0 API over HTTP (boto3, AWS CLI, SDKs).

    backend = Backend(store_path, make_engine=factory)    # one store, an Engine per (region, account)
    ApiServer(backend, port=8083).serve_forever()          # or .start() in a thread

Modules: server.py (HTTP and SigV4 scope), operations.py (X-Amz-Target -> function),
machines.py / executions.py / tasks.py / tagging.py (the operations), requests.py (member
checks), shapes.py (response shapes), errors.py (AWS error names), backend.py.
"""
from workflow.engine.api.backend import Backend, EngineFactory
from workflow.engine.api.server import ApiServer

__all__ = ["ApiServer", "Backend", "EngineFactory"]
