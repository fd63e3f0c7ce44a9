# Probes of sft_lora: the grader appends these functions to your notebook as its last cell and calls them to receive
# your models' settings, weights and logits, the saved files and the trainer's arguments, as plain data.
import json as _json
import os as _os

from safetensors.torch import load_file as _load_file


def _variable(name: str):
    if name not in globals():
        raise NameError(f"`{name}` is not defined: run the cell that creates it and fix its error")
    return globals()[name]


def grading_lora_config() -> dict:
    """The LoRA settings of `model`, as JSON data."""
    settings = _variable("model").peft_config["default"].to_dict()
    return _json.loads(_json.dumps(settings, default=lambda v: sorted(v) if isinstance(v, (set, frozenset)) else str(v)))


def grading_parameters(model_name: str) -> dict:
    """Name -> requires_grad for every parameter of the model held in the variable `model_name`."""
    return {name: p.requires_grad for name, p in _variable(model_name).named_parameters()}


def grading_parameter(model_name: str, name: str, start: int = 0, stop: int | None = None):
    """Rows start:stop of one parameter of the model held in the variable `model_name`."""
    return _variable(model_name).get_parameter(name)[start:stop]


def grading_logits(model_name: str, text: str):
    """next_token_logits of the model held in the variable `model_name`."""
    return _variable("next_token_logits")(_variable(model_name), text)


def grading_saved_adapter() -> dict:
    """The file names in OUTPUT_DIR and the tensors of the saved adapter weights."""
    folder = _variable("OUTPUT_DIR")
    files = sorted(_os.listdir(folder)) if _os.path.isdir(folder) else []
    weights = _os.path.join(folder, "adapter_model.safetensors")
    return {"files": files, "weights": _load_file(weights) if _os.path.isfile(weights) else {}}


def grading_training_arguments() -> dict:
    """The arguments `trainer` trained with."""
    args = _variable("trainer").args
    names = ("per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "num_train_epochs",
             "max_steps", "max_length", "output_dir")
    return {name: getattr(args, name, None) for name in names}
