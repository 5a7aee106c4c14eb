"""ddcicd: CI/CD for a distracted-driver image classifier on AWS Step Functions.

Exact versions live in constraints.txt (`pip install -c constraints.txt -e .[dev]`);
the ranges here say what the code needs, the constraints file what every machine gets.
"""
from setuptools import find_packages, setup

setup(
    name="ddcicd",
    version="0.1.0",
    description="Retrain, check and ship a distracted-driver classifier with Step Functions, locally or on AWS",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["workflow*", "steps*", "lambdas*", "data*"]),
    package_data={"workflow": ["console/static/*", "*.yaml"]},
    install_requires=[
        "click>=8.1",
        "rich>=13",
        "pydantic>=2.6",
        "pyyaml>=6",
        "numpy>=1.26,<3",
        "opencv-python-headless>=4.9",
        "simplejpeg>=1.7",
        "torch==2.13.0",
        "onnx>=1.16",
        "onnxscript>=0.2",
        "onnxruntime>=1.18",
        "aiohttp>=3.9",
        "httptools>=0.6",  # the load-test Lambda's HTTP/1.1 response parser (lambdas/load_test/connection.py)
        "uvloop>=0.19",
        "boto3>=1.34",
        "jsonata-python>=0.7,<0.8",  # JSONata query language in the local Step Functions engine
        "stepfunctions==2.3.0",
        "setuptools<81",  # stepfunctions 2.3.0 imports pkg_resources, gone from setuptools 81
        "sagemaker>=2.257,<3",
        "matplotlib>=3.8",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "hypothesis>=6.100",
            "moto[all,server]>=5",  # stands in for AWS in tests of the AWS code path; server mode for bench_engine_api
            "awscli>=1.32",  # the AWS CLI, run unchanged against `ddcicd engine serve` in tests
            "pyflakes>=3",  # unused imports and names, checked by tests/test_lint.py
            "playwright>=1.44",
            "cfn-lint>=1",
            "pillow>=10",  # tests: CMYK and EXIF-rotated JPEG fixtures for the processing step
        ],
    },
    entry_points={"console_scripts": ["ddcicd=workflow.cli:main"]},
)
