"""The pipeline as a Step Functions state machine, built with the Data Science SDK.

One `create_*_step()` per stage, `create_graph()` wires them, `render_definition()` gives
the ASL document both engines run unchanged. No AWS call happens here: the SDK objects get
an explicit region, role and output path, so building the definition works offline.

    Process -> ReadManifest -> SummariseDataset -> Train -> CreateModel -> CreateStagingEndpointConfig -> CreateStagingEndpoint
    -> (DescribeStagingEndpoint / WaitForStaging loop) -> Evaluate -> QualityGate
    -> PrepareLoadTest -> LoadTest (Map) -> MergeLoadTest -> SloGate
    -> CreateProductionEndpointConfig -> FindProductionEndpoint -> ProductionEndpointExists
       -> UpdateProductionEndpoint | CreateProductionEndpoint
    -> (production InService loop) -> RecordProductionMetrics -> [BatchScore -> AssembleSubmission]
    -> DeleteStagingEndpoint -> PipelineSucceeded

Everything after the staging endpoint exists is caught and routed through
CleanUpAfterFailure (delete staging) to PipelineFailed, which re-raises the original error.
Process and Train are not caught: a failure there stops the execution at that state, so
RedriveExecution resumes exactly there without redoing earlier work.
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
