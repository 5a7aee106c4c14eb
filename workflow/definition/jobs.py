"""The SageMaker jobs: processing, reading the manifest, training, batch transform."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from steps.hyperparameters import as_strings
from workflow.config import PipelineConfig
from workflow.contracts.algorithms import ALGORITHMS, SOURCE_TARBALL
from workflow.contracts.container import CHECKPOINTS

if TYPE_CHECKING:
    from stepfunctions.inputs import ExecutionInput
    from stepfunctions.steps import State

from workflow.definition.common import _retry, _sagemaker_session, _set, _unique_per_attempt

# Where the processing container finds its inputs and leaves its output (any folder under
# /opt/ml/processing will do; the local engine maps whatever the request names).
PROCESSING_INPUT = "/opt/ml/processing/input"
PROCESSING_CODE = "/opt/ml/processing/code"  # steps/ from CodeUri, importable through PYTHONPATH
PROCESSING_OUTPUT = "/opt/ml/processing/output"


def create_process_step(config: PipelineConfig, inputs: ExecutionInput) -> State:
    """A SageMaker Processing job running steps/process.py: raw images -> RecordIO + manifest."""
    from sagemaker.processing import Processor
    from stepfunctions.steps import ProcessingStep

    processing = config.processing
    processor = Processor(
        role=config.aws.sagemaker_role_arn,
        image_uri=processing.image_uri,
        instance_count=1,
        instance_type=processing.instance_type,
        sagemaker_session=_sagemaker_session(config),
    )
    arguments = [
        "--validation-drivers", str(processing.validation_drivers),
        "--resize", str(processing.resize),
        "--quality", str(processing.quality),
        "--seed", str(processing.seed),
    ]  # fmt: skip
    step = ProcessingStep(
        "Process",
        processor=processor,
        job_name=inputs["ProcessingJobName"],
        container_entrypoint=["python3", "-m", "steps.process"],
        container_arguments=arguments,
        parameters={
            "ProcessingInputs": [
                _processing_input("data", inputs["RawDataUri"], PROCESSING_INPUT),
                _processing_input("code", inputs["CodeUri"], PROCESSING_CODE),
            ],
            "ProcessingOutputConfig": {
                "Outputs": [
                    {
                        "OutputName": "processed",
                        "S3Output": {
                            "S3Uri": inputs["ProcessedDataUri"],
                            "LocalPath": PROCESSING_OUTPUT,
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ]
            },
            "Environment": {"PYTHONPATH": PROCESSING_CODE},
        },
        result_path="$.processing",
    )
    step.parameters["ProcessingJobName.$"] = _unique_per_attempt("ProcessingJobName")
    step.parameters.pop("ProcessingJobName", None)
    _set(step, result_selector={
        "ProcessingJobName.$": "$.ProcessingJobName",
        "ProcessingJobStatus.$": "$.ProcessingJobStatus",
    })  # fmt: skip
    step.add_retry(_retry(config))
    return step


def create_read_manifest_steps(config: PipelineConfig, inputs: ExecutionInput) -> tuple[State, State]:
    """Training needs the dataset's size: read manifest.json, keep the few numbers it needs.

    The built-in algorithm requires num_training_samples and num_classes; only the
    processing step knows them, so they reach Train through the state, not the config.
    """
    from stepfunctions.steps import Pass, Task

    read = Task(
        "ReadManifest",
        resource="arn:aws:states:::aws-sdk:s3:getObject",
        parameters={"Bucket": inputs["ProcessedDataBucket"], "Key": inputs["ManifestKey"]},
        result_path="$.dataset",
    )
    _set(read, result_selector={"manifest.$": "States.StringToJson($.Body)"})
    read.add_retry(_retry(config, ["S3.SdkClientException", "S3.S3Exception", "ThrottlingException"]))
    summarise = Pass(
        "SummariseDataset",
        parameters={
            "train_count.$": "$.dataset.manifest.splits.train.count",
            "validation_count.$": "$.dataset.manifest.splits.validation.count",
            "num_classes.$": "States.ArrayLength($.dataset.manifest.classes)",
            "classes.$": "$.dataset.manifest.classes",
        },
        result_path="$.dataset",
    )
    read.next(summarise)
    return read, summarise


def _processing_input(name: str, source: Any, destination: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": source,
            "LocalPath": destination,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
        },
    }


def _recordio_channel(name: str, uri: Any) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "ContentType": "application/x-recordio",
        "CompressionType": "None",
        "RecordWrapperType": "None",
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
        },
    }


def training_image_uri(config: PipelineConfig) -> str:
    """The built-in Image Classification image, or the PyTorch container running steps/train.py."""
    algorithm = ALGORITHMS[config.training.algorithm]
    return algorithm.training_image.uri(config.aws.region, config.training.instance_type)


def create_train_step(config: PipelineConfig, inputs: ExecutionInput) -> State:
    """A training job with the built-in Image Classification contract (RecordIO channels)."""
    from sagemaker.estimator import Estimator
    from stepfunctions.steps import TrainingStep

    training = config.training
    estimator = Estimator(
        image_uri=training_image_uri(config),
        role=config.aws.sagemaker_role_arn,
        instance_count=1,
        instance_type=training.instance_type,
        max_run=training.max_runtime_seconds,
        input_mode="File",
        output_path=f"s3://{config.aws.bucket}/{config.aws.prefix}/models",
        hyperparameters=as_strings(config.training.hyperparameters),  # SageMaker passes strings; say so here too
        debugger_hook_config=False,  # the built-in algorithm has no Debugger hook
        sagemaker_session=_sagemaker_session(config),
    )
    step = TrainingStep(
        "Train",
        estimator=estimator,
        job_name=inputs["TrainingJobName"],
        output_data_config_path=inputs["ModelOutputUri"],
        parameters={
            "InputDataConfig": [
                _recordio_channel("train", inputs["TrainChannelUri"]),
                _recordio_channel("validation", inputs["ValidationChannelUri"]),
            ],
            "CheckpointConfig": {"S3Uri": inputs["CheckpointUri"], "LocalPath": CHECKPOINTS},
        },
        result_path="$.training",
    )
    hyperparameters = step.parameters["HyperParameters"]
    for name in ("num_training_samples", "num_classes"):  # the data decides, not the config
        hyperparameters.pop(name, None)
    hyperparameters["num_training_samples.$"] = "States.Format('{}', $.dataset.train_count)"
    hyperparameters["num_classes.$"] = "States.Format('{}', $.dataset.num_classes)"
    script_mode = ALGORITHMS[training.algorithm].training_hyperparameters(config.aws.region)
    if script_mode:  # the framework container runs the program from the tarball under CodeUri
        hyperparameters.update(script_mode)
        hyperparameters["sagemaker_submit_directory.$"] = f"States.Format('{{}}{SOURCE_TARBALL}', $$.Execution.Input.CodeUri)"
    step.parameters["TrainingJobName.$"] = _unique_per_attempt("TrainingJobName")
    step.parameters.pop("TrainingJobName", None)
    _set(step, result_selector={
        "TrainingJobName.$": "$.TrainingJobName",
        "ModelArtifacts.$": "$.ModelArtifacts",
        "FinalMetricDataList.$": "$.FinalMetricDataList",
    })  # fmt: skip
    step.add_retry(_retry(config))
    return step


def create_batch_score_step(config: PipelineConfig, inputs: ExecutionInput) -> State:
    """Batch Transform over imgs/test with the promoted model (one .out per image)."""
    from stepfunctions.steps import Task

    step = Task(
        "BatchScore",
        resource="arn:aws:states:::sagemaker:createTransformJob.sync",
        parameters={
            "TransformJobName.$": _unique_per_attempt("TransformJobName"),
            "ModelName": inputs["ModelName"],
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": inputs["TestImagesUri"]}},
                "ContentType": "application/x-image",
                "SplitType": "None",
            },
            "TransformOutput": {"S3OutputPath": inputs["TransformOutputUri"], "Accept": "application/json"},
            "TransformResources": {"InstanceCount": 1, "InstanceType": config.batch_score.instance_type},
        },
        result_path=None,
    )
    step.add_retry(_retry(config))
    return step
