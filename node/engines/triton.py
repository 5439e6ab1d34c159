"""Triton Inference Server as a remote engine (KServe v2 over HTTP, ``tritonclient``)."""
from __future__ import annotations

from typing import Mapping

import numpy as np

__all__ = ["TritonEngine"]


class TritonEngine:
    """One model on a Triton server.

    Parameters
    ----------
    url:
        ``host:port`` of Triton's HTTP endpoint.
    model_name:
        The model's name in Triton's repository (``ainode models export-triton`` writes
        one named after each pack).
    """

    name = "triton"

    def __init__(self, url: str, model_name: str, timeout: float = 60.0) -> None:
        import tritonclient.http as httpclient

        self._http = httpclient
        self._client = httpclient.InferenceServerClient(url=url, connection_timeout=timeout, network_timeout=timeout)
        if not self._client.is_model_ready(model_name):
            raise RuntimeError(f"Triton at {url} has no ready model {model_name!r}")
        metadata = self._client.get_model_metadata(model_name)
        self.model_name = model_name
        self.input_names = [i["name"] for i in metadata["inputs"]]
        self.output_names = [o["name"] for o in metadata["outputs"]]
        self._datatypes = {i["name"]: i["datatype"] for i in metadata["inputs"]}

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Send one inference request with the whole batch."""
        requests = []
        for name in self.input_names:
            array = np.ascontiguousarray(inputs[name], dtype=np.float32)
            request = self._http.InferInput(name, list(array.shape), self._datatypes.get(name, "FP32"))
            request.set_data_from_numpy(array)
            requests.append(request)
        wanted = [self._http.InferRequestedOutput(n) for n in self.output_names]
        result = self._client.infer(self.model_name, requests, outputs=wanted)
        return {n: result.as_numpy(n) for n in self.output_names}
