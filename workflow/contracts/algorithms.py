"""What `training.algorithm` chooses: the training image and the serving image, with their entry points.

    algorithm = ALGORITHMS[config.training.algorithm]
    algorithm.training_image.uri(region, instance_type)    # Train's AlgorithmSpecification.TrainingImage
    algorithm.serving_image.uri(region, instance_type)     # CreateModel's PrimaryContainer.Image
    algorithm.serving_environment(region)                  # ... and its Environment

One record per algorithm, so the model is always served by an image that can read what
the training job wrote:

- builtin: the SageMaker built-in Image Classification algorithm; one image trains and serves.
- pytorch: steps/train.py in the PyTorch training container (script mode: `sagemaker_program`
  names the script, `sagemaker_submit_directory` the tarball `ddcicd aws deploy` uploads);
  the model is served by the PyTorch *inference* container, which imports SAGEMAKER_PROGRAM
  from the model archive's code/ folder (SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code).

The local engine runs steps/train.py and steps/serve.py for every image listed here and
refuses the others (`repository` is how it recognises them), so a definition that serves
with a training-only image fails locally too. Image URIs come from the SageMaker SDK,
imported only when a URI is asked for.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SOURCE_TARBALL = "sourcedir.tar.gz"  # steps/*.py as a framework container unpacks them (uploaded by `aws deploy`)
MODEL_CODE_DIRECTORY = "/opt/ml/model/code"  # where inference containers import SAGEMAKER_PROGRAM from


@dataclass(frozen=True)
class Image:
    """A SageMaker-owned image, as `sagemaker.image_uris.retrieve` names it."""

    framework: str
    repository: str  # the ECR repository in the URI, e.g. pytorch-inference
    version: str | None = None  # framework images only
    py_version: str | None = None
    scope: Literal["training", "inference"] | None = None

    def uri(self, region: str, instance_type: str) -> str:
        from sagemaker import image_uris

        if self.version is None:
            return image_uris.retrieve(self.framework, region)
        return image_uris.retrieve(self.framework, region, version=self.version, py_version=self.py_version,
                                   instance_type=instance_type, image_scope=self.scope)  # fmt: skip


@dataclass(frozen=True)
class Algorithm:
    name: str  # the value of training.algorithm
    training_image: Image
    serving_image: Image
    training_program: str | None = None  # script mode: what the training container runs
    serving_program: str | None = None  # script mode: the module the inference container imports

    def training_hyperparameters(self, region: str) -> dict[str, str]:
        """The script-mode names SageMaker's framework containers read from the hyperparameters
        (sagemaker_submit_directory is per execution: the definition adds it from CodeUri)."""
        if self.training_program is None:
            return {}
        return {"sagemaker_program": self.training_program, "sagemaker_region": region}

    def serving_environment(self, region: str) -> dict[str, str]:
        """CreateModel's PrimaryContainer.Environment: the same script-mode settings, in upper case."""
        if self.serving_program is None:
            return {}
        return {
            "SAGEMAKER_PROGRAM": self.serving_program,
            "SAGEMAKER_SUBMIT_DIRECTORY": MODEL_CODE_DIRECTORY,
            "SAGEMAKER_REGION": region,
        }


_IMAGE_CLASSIFICATION = Image("image-classification", "image-classification")
BUILTIN = Algorithm("builtin", training_image=_IMAGE_CLASSIFICATION, serving_image=_IMAGE_CLASSIFICATION)
PYTORCH = Algorithm(
    "pytorch",
    training_image=Image("pytorch", "pytorch-training", "2.3", "py311", "training"),
    serving_image=Image("pytorch", "pytorch-inference", "2.3", "py311", "inference"),
    training_program="steps/train.py",
    serving_program="steps.inference",
)
ALGORITHMS: dict[str, Algorithm] = {algorithm.name: algorithm for algorithm in (BUILTIN, PYTORCH)}


def training_repositories() -> set[str]:
    return {algorithm.training_image.repository for algorithm in ALGORITHMS.values()}


def serving_repositories() -> set[str]:
    return {algorithm.serving_image.repository for algorithm in ALGORITHMS.values()}
