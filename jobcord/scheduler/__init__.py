"""When and where work runs: GPU classes and queue placement, retries, recovery."""

from .context import JobContext
from .errors import InputValidationError, JobDefinitionError, OutputValidationError, UnknownJob
from .gpu_classes import CPU_CLASS, GPU_CLASSES, GpuClass, NodeSelector, classify_gpu_name
from .jobspec import AppRegistry, Hook, JobSpec
from .loader import load_app
from .queues import placement_class, queue_name
from .retry_policy import RetryPolicy
from .signatures import JobSignature, analyse, input_hash

__all__ = [
    "AppRegistry",
    "CPU_CLASS",
    "GPU_CLASSES",
    "GpuClass",
    "Hook",
    "InputValidationError",
    "OutputValidationError",
    "JobContext",
    "JobDefinitionError",
    "JobSignature",
    "JobSpec",
    "NodeSelector",
    "RetryPolicy",
    "UnknownJob",
    "analyse",
    "classify_gpu_name",
    "input_hash",
    "load_app",
    "placement_class",
    "queue_name",
]
