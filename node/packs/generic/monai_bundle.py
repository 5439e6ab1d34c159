"""``format = "monai-bundle"``: a MONAI bundle run with MONAI itself, as MONAI Deploy runs one.

The bundle's ``configs/inference.json`` is read with MONAI's ``ConfigParser``; its
``preprocessing``, ``network_def`` (weights from ``models/model.pt``, or ``models/model.ts``),
``inferer`` and ``postprocessing`` run as the bundle defines them, except that its image
loader (``LoadImage(d)``) is left out and given the series the node assembled, as the
MetaTensor the loader would have made (RAS affine, no channel), and its writers
(``SaveImage(d)``) are left out. The prediction (after the bundle's own ``Invertd``, on the
input's grid) goes back to the node with its affine. Label names come from the metadata's
``network_data_format.outputs.<key>.channel_def``.

``engine = "auto"`` exports the network to ONNX and runs it on ONNX Runtime (its CUDA
provider where present) inside the bundle's inferer (pre- and post-processing stay MONAI's);
a network that does not export runs in torch, and says so in its engine name. ``engine = "torch"`` runs the network as
the bundle does.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...logs import log
from .spec import ModelSpec
from .volume import LPS_TO_RAS

__all__ = ["BundleRunner", "OnnxNetwork", "bundle_config"]

_logger = logging.getLogger("ainode.packs.generic")


def bundle_config(root: Path) -> Path:
    """The bundle's inference configuration (``configs/inference.json``, or ``.yaml``)."""
    for ext in ("json", "yaml", "yml"):
        path = root / "configs" / f"inference.{ext}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no configs/inference.json in {root}")


class OnnxNetwork:
    """The bundle's network exported to ONNX, called like the torch module by MONAI's inferer."""

    def __init__(self, network: Any, example: Any, path: Path) -> None:
        import onnxruntime as ort
        import torch

        spatial = {0: "batch", **{2 + i: f"d{i}" for i in range(example.dim() - 2)}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(network, (example,), str(path), dynamo=False, input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": spatial, "output": spatial},
                              opset_version=17)
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(path), ort.SessionOptions(), providers=providers)
        self.engine = "onnxruntime-cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "onnxruntime-cpu"

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        array = x.detach().cpu().numpy().astype(np.float32, copy=False)
        return torch.from_numpy(self.session.run(None, {"input": array})[0])


class BundleRunner:
    """The engine of a ``monai-bundle`` model (see the module's docstring)."""

    def __init__(self, spec: ModelSpec) -> None:
        import torch
        from monai.bundle import ConfigParser

        root = Path(spec.path)
        parser = ConfigParser()
        parser.read_config(str(bundle_config(root)))
        parser.read_meta(str(root / "configs" / "metadata.json"))
        parser["bundle_root"] = str(root)
        meta = parser.get("_meta_", {})
        outputs = meta.get("network_data_format", {}).get("outputs", {}) or {"pred": {}}
        inputs = meta.get("network_data_format", {}).get("inputs", {}) or {"image": {}}
        self.pred_key = next(iter(outputs))
        self.names = {int(k): str(v) for k, v in (outputs[self.pred_key].get("channel_def") or {}).items()}
        self.names.pop(0, None)
        self.version = spec.version or str(meta.get("version", "unversioned"))
        self.network, weights = _network(parser, root)
        self.pre = _without(parser.get_parsed_content("preprocessing"), ("LoadImage", "LoadImaged"))
        self.image_key = _loader_key(parser) or next(iter(inputs))
        self.inferer = parser.get_parsed_content("inferer")
        self.post = _without(parser.get_parsed_content("postprocessing"), ("SaveImage", "SaveImaged"))
        self.identity = weights.read_bytes() + bundle_config(root).read_bytes()
        self.name = "torch"
        if spec.engine == "auto":
            self._to_onnx(inputs.get(self.image_key, {}), hashlib.sha256(self.identity).hexdigest()[:16])
        torch.set_grad_enabled(False)

    def _to_onnx(self, image_format: Mapping[str, Any], digest: str) -> None:
        import torch

        roi = getattr(self.inferer, "roi_size", None) or image_format.get("spatial_shape") or (64, 64, 64)
        roi = [int(v) if isinstance(v, (int, float)) and v > 0 else 64 for v in roi]
        channels = int(image_format.get("num_channels", 1) or 1)
        path = Path(tempfile.gettempdir()) / f"ainode-bundle-{digest}-{os.getpid()}.onnx"  # one per worker process
        try:
            with torch.no_grad():
                self.network = OnnxNetwork(self.network, torch.zeros(1, channels, *roi), path)
            self.name = self.network.engine
        except Exception as exc:  # the bundle as it is, in torch
            log(_logger, logging.WARNING, "bundle network not exported to ONNX; it runs in torch",
                reason=f"{type(exc).__name__}: {str(exc)[:200]}")
            self.name = "torch (ONNX export failed)"

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The bundle's prediction for ``inputs["image"]`` ``(1, slice, row, column)`` with its LPS affine:
        ``labels`` ``[i, j, k]`` and their RAS ``affine``."""
        import torch
        from monai.data import MetaTensor

        ras = LPS_TO_RAS @ np.asarray(inputs["affine"][0], float)
        data = np.ascontiguousarray(np.asarray(inputs["image"][0], np.float32).transpose(2, 1, 0))
        image = MetaTensor(torch.from_numpy(data), affine=torch.from_numpy(ras), meta={
            "original_affine": ras, "spatial_shape": np.asarray(data.shape), "original_channel_dim": float("nan"),
            "filename_or_obj": "series", "space": "RAS"})
        with torch.no_grad():
            d = self.pre({self.image_key: image})
            d[self.pred_key] = self.inferer(d[self.image_key][None], self.network)[0]
            d = self.post(d)
        pred = d[self.pred_key]
        array = pred.detach().cpu().numpy() if hasattr(pred, "detach") else np.asarray(pred)
        labels = array.argmax(axis=0) if array.shape[0] > 1 else array[0]
        affine = np.asarray(pred.affine if hasattr(pred, "affine") else ras, float)
        return {"labels": np.rint(labels).astype(np.int32)[None], "affine": affine[None]}


def _network(parser: Any, root: Path) -> tuple[Any, Path]:
    """The bundle's network with its weights, in eval mode, and the weights file."""
    import torch

    ts, pt = root / "models" / "model.ts", root / "models" / "model.pt"
    if pt.is_file():
        network = parser.get_parsed_content("network_def")
        state = torch.load(str(pt), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        network.load_state_dict(state)
        weights = pt
    else:
        network, weights = torch.jit.load(str(ts), map_location="cpu"), ts
    return network.eval(), weights


def _without(compose: Any, names: tuple[str, ...]) -> Any:
    """``compose`` without its transforms of classes ``names`` (changed in place: ``Invertd`` sees it)."""
    transforms = getattr(compose, "transforms", None)
    if transforms is not None:
        compose.transforms = tuple(t for t in transforms if type(t).__name__ not in names)
    return compose


def _loader_key(parser: Any) -> str | None:
    """The key the bundle's ``LoadImaged`` fills (the image's key), if it has one."""
    for item in parser.get("preprocessing", {}).get("transforms", []):
        if isinstance(item, Mapping) and str(item.get("_target_", "")).endswith("LoadImaged"):
            keys = item.get("keys", "image")
            return str(keys[0] if isinstance(keys, list) else keys)
    return None
