"""The pipeline as a Step Functions state machine, built with the Data Science SDK.

One `create_*_step()` per stage, `create_graph()` wires them, `render_definition()` gives
the ASL document both engines run unchanged. No AWS call happens here: the SDK objects get
an explicit region, role and output path, so building the definition works offline.

    Process -> ReadManifest -> SummariseDataset -> Train -> CreateModel -> CreateStagingEndpointConfig -> CreateStagingEndpoint
    -> (DescribeStagingEndpoint / WaitForStaging loop) -> Evaluate -> QualityGate
    -> PrepareLoadTest -> LoadTest (Map) -> MergeLoadTest -> SloGate -> [RequestApproval]
    -> CreateProductionEndpointConfig -> FindProductionEndpoint -> ProductionEndpointExists
       -> UpdateProductionEndpoint | CreateProductionEndpoint
    -> (production InService loop) -> RecordProductionMetrics -> [BatchScore -> AssembleSubmission]
    -> DeleteStagingEndpoint -> PipelineSucceeded

Faults and decisions never mix. A fault (a Task's error after its retries) is caught
nowhere: the execution stops FAILED at that Task with everything made so far kept, and
RedriveExecution resumes exactly there; every state a redrive can re-enter is safe to run
twice (endpoints.py: a refused create looks its resource up before creating it again).
A decision (a gate's Default, an endpoint that reached Failed, an approval rejected or
timed out) records $.error and goes through DecisionCleanUp (delete the staging endpoint;
production is never touched) to PipelineFailed, which names the decision's error.
"""
from workflow.definition.common import EXECUTION_INPUT_SCHEMA, TRANSIENT_ERRORS, Resources
from workflow.definition.endpoints import serving_container
from workflow.definition.graph import build_workflow, create_graph, render_definition, resources_for
from workflow.definition.jobs import training_image_uri

__all__ = [
    "EXECUTION_INPUT_SCHEMA",
    "TRANSIENT_ERRORS",
    "Resources",
    "build_workflow",
    "create_graph",
    "render_definition",
    "resources_for",
    "serving_container",
    "training_image_uri",
]
