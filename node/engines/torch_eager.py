"""PyTorch eager: the reference engine, and the baseline the benchmarks compare against.

It rebuilds the pack's network from ``model.json`` with ``<pack>.net.build_network`` and
loads ``model.pt`` (a state dict) from beside the ONNX graph. Needs the ``train`` extra.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["TorchEngine", "torch_available"]


def torch_available() -> bool:
    """Whether torch imports here."""
    try:
        importlib.import_module("torch")
    except ImportError:
        return False
    return True


class TorchEngine:
    """The pack's PyTorch module in eval mode, on the CPU or a CUDA device.

    Parameters
    ----------
    model_path:
        The pack's ONNX graph; ``model.pt`` and ``model.json`` lie beside it. The graph
        gives the input and output names.
    network_module:
        Module with ``build_network(meta: dict) -> torch.nn.Module`` (e.g.
        ``models.head_ct_hematoma.net``).
    device:
        ``"cpu"`` or ``"cuda"``.
    """

    name = "torch"

    def __init__(self, model_path: Path, network_module: str, device: str = "cpu", threads: int = 0) -> None:
        import onnx
        import torch

        self._torch = torch
        if threads:
            torch.set_num_threads(threads)
        model_path = Path(model_path)
        weights = model_path.with_suffix(".pt")
        if not weights.exists():
            raise FileNotFoundError(f"torch engine needs {weights.name} beside {model_path.name}")
        meta_path = model_path.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        graph = onnx.load(str(model_path), load_external_data=False).graph
        initializers = {i.name for i in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in initializers]
        self.output_names = [o.name for o in graph.output]
        network = importlib.import_module(network_module).build_network(meta)
        network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.device = torch.device(device)
        self._network = network.eval().to(self.device)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the module without autograd; outputs named like the ONNX graph's."""
        torch = self._torch
        tensors = [torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)).to(self.device)
                   for n in self.input_names]
        with torch.inference_mode():
            out = self._network(*tensors)
        outputs = out if isinstance(out, (tuple, list)) else (out,)
        if isinstance(out, dict):
            outputs = tuple(out[n] for n in self.output_names)
        return {n: t.detach().float().cpu().numpy() for n, t in zip(self.output_names, outputs)}
