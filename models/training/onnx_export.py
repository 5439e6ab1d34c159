"""ONNX export shared by every pack's training: the graph the node deploys."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["export_onnx"]


def export_onnx(
    model: Any, input_shape: Sequence[int], path: Path, *, input_name: str, output_names: Sequence[str],
    spatial_dynamic: bool = False, extra_inputs: Mapping[str, Sequence[int]] | None = None,
) -> None:
    """Export ``model`` (eval mode) to ONNX opset 17 with a dynamic batch axis.

    Parameters
    ----------
    input_shape:
        Shape of the example input, batch first.
    spatial_dynamic:
        Also make the last two axes of the input and outputs dynamic.
    extra_inputs:
        Further inputs after the first, name → example shape (batch first), passed to
        ``model`` in this order.
    """
    import torch

    model.eval()
    axes = {0: "batch", 2: "height", 3: "width"} if spatial_dynamic else {0: "batch"}
    extra = dict(extra_inputs or {})
    kwargs = dict(
        input_names=[input_name, *extra],
        output_names=list(output_names),
        dynamic_axes={name: axes for name in (input_name, *extra, *output_names)},
        opset_version=17,
    )
    examples = (torch.zeros(*input_shape), *(torch.zeros(*shape) for shape in extra.values()))
    with warnings.catch_warnings():
        # The TorchScript exporter announces its own deprecation; the graph is fine.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(model, examples, str(path), dynamo=False, **kwargs)
