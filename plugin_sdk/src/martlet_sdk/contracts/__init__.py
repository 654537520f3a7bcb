"""Contract base classes, one per capability kind.

Every contract runs the registration checks of :class:`RecordContract`; the kinds whose
interfaces are settled add behavioural checks (:class:`AcceleratorContract`,
:class:`CommandContract`, :class:`TunerContract`, :class:`LossContract`,
:class:`DatasetContract`, :class:`KernelContract`, :class:`ServingContract`,
:class:`EvalTaskContract`,
:class:`QuantizerContract`, :class:`RewardContract`). The others check
the implementation's shape against :mod:`martlet.interfaces` and gain behavioural checks as
their capabilities land (a serving backend: :class:`ServingContract`).
"""

from martlet_sdk.contracts.accelerator import AcceleratorContract
from martlet_sdk.contracts.base import RecordContract, contract_for, requires_capability
from martlet_sdk.contracts.command import CommandContract
from martlet_sdk.contracts.dataset import DatasetContract
from martlet_sdk.contracts.eval_task import EvalTaskContract
from martlet_sdk.contracts.kernel import KernelContract
from martlet_sdk.contracts.loss import LossContract
from martlet_sdk.contracts.quantizer import QuantizerContract
from martlet_sdk.contracts.reward import RewardContract
from martlet_sdk.contracts.tuner import TunerContract, train_steps


class ModelContract(RecordContract):
    """A model id: registration checks."""

    kind = "models"


class ModelLoaderContract(RecordContract):
    """A model loader: registration checks and the ModelLoader shape."""

    kind = "model_loaders"
    interface = {"can_load": None, "load": None, "load_tokenizer": None}


class TemplateContract(RecordContract):
    """A chat template: registration checks and the Template shape."""

    kind = "templates"
    interface = {"render": None, "encode": None}


class DatasetSourceContract(RecordContract):
    """A dataset source: registration checks and the DatasetSource shape."""

    kind = "dataset_sources"
    interface = {"can_read": None, "read": None}


class ParallelContract(RecordContract):
    """A parallel strategy: registration checks and the ParallelStrategy shape."""

    kind = "parallel_strategies"
    interface = {"accelerator_kwargs": None}


class InferenceBackendContract(RecordContract):
    """An inference backend: registration checks and the InferenceEngine shape."""

    kind = "inference_backends"
    interface = {"generate": None, "stream": None}


# (imported after InferenceBackendContract: contract_for("inference_backends") names that one)
from martlet_sdk.contracts.serving import ServingContract, serving_model_dir  # noqa: E402


class CallbackContract(RecordContract):
    """A callback: registration checks and the Callback shape."""

    kind = "callbacks"
    interface = {"on_log": None, "on_end": None}


__all__ = [
    "AcceleratorContract",
    "CallbackContract",
    "CommandContract",
    "DatasetContract",
    "DatasetSourceContract",
    "EvalTaskContract",
    "InferenceBackendContract",
    "KernelContract",
    "LossContract",
    "ModelContract",
    "ModelLoaderContract",
    "ParallelContract",
    "QuantizerContract",
    "RecordContract",
    "RewardContract",
    "ServingContract",
    "TemplateContract",
    "TunerContract",
    "contract_for",
    "requires_capability",
    "serving_model_dir",
    "train_steps",
]
