"""Native TensorRT: ONNX → serialized FP16 engine, cached on disk, run with the CUDA runtime.

The engine file is keyed by GPU name, compute capability, TensorRT version and the ONNX
graph's SHA-256, so a new GPU, a new TensorRT or new weights build a new engine. A file
lock keeps two processes from building the same engine at once; the timing cache is
shared. Needs the ``gpu`` extra (``tensorrt``, ``cuda-python``) and a CUDA GPU.
"""
from __future__ import annotations

import fcntl
import hashlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

__all__ = ["TensorRTEngine", "engine_cache_key", "tensorrt_available"]


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # type: ignore[no-redef]  # older cuda-python
    return cudart


def _check(result: Any) -> Any:
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA runtime error {err}")
    return rest[0] if len(rest) == 1 else rest


def tensorrt_available() -> bool:
    """Whether tensorrt and the CUDA runtime import and a GPU is visible."""
    try:
        import tensorrt  # noqa: F401

        return int(_check(_cudart().cudaGetDeviceCount())) > 0
    except Exception:
        return False


def engine_cache_key(onnx_path: Path) -> str:
    """``<gpu>-sm<cc>-trt<version>-<onnx sha256[:16]>``: what an engine file is valid for."""
    import tensorrt as trt

    cudart = _cudart()
    props = _check(cudart.cudaGetDeviceProperties(0))
    gpu = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()[:16]
    safe_gpu = "".join(c if c.isalnum() else "_" for c in gpu)
    return f"{safe_gpu}-sm{props.major}{props.minor}-trt{trt.__version__}-{digest}"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class TensorRTEngine:
    """A TensorRT engine with one optimisation profile over the batch axis.

    Parameters
    ----------
    model_path:
        The ONNX graph (dynamic batch axis 0).
    cache_dir:
        Where engines and the timing cache live.
    max_batch, opt_batch:
        The optimisation profile's batch range (min 1).
    fp16:
        Build FP16 kernels where TensorRT finds them faster.
    """

    name = "tensorrt"

    def __init__(
        self, model_path: Path, cache_dir: Path | None = None, *, max_batch: int = 32, opt_batch: int = 8,
        fp16: bool = True,
    ) -> None:
        import tensorrt as trt

        self._trt = trt
        self._cudart = _cudart()
        self.model_path = Path(model_path)
        cache = Path(cache_dir or self.model_path.parent / "trt-cache")
        self.engine_path = cache / f"{engine_cache_key(self.model_path)}-b{max_batch}{'-fp16' if fp16 else ''}.engine"
        logger = trt.Logger(trt.Logger.WARNING)
        with _file_lock(cache / ".build.lock"):
            if not self.engine_path.exists():
                self._build(logger, cache / "timing.cache", max_batch, opt_batch, fp16)
        runtime = trt.Runtime(logger)
        self._engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            raise RuntimeError(f"could not load TensorRT engine {self.engine_path}")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self.input_names = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._stream = _check(self._cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def _build(self, logger: Any, timing_cache_path: Path, max_batch: int, opt_batch: int, fp16: bool) -> None:
        trt = self._trt
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(self.model_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {self.model_path.name}: {errors}")
        config = builder.create_builder_config()
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        timing = config.create_timing_cache(timing_cache_path.read_bytes() if timing_cache_path.exists() else b"")
        config.set_timing_cache(timing, ignore_mismatch=False)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            rest = tuple(tensor.shape)[1:]
            profile.set_shape(tensor.name, (1, *rest), (opt_batch, *rest), (max_batch, *rest))
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT could not build an engine for {self.model_path.name}")
        tmp = self.engine_path.with_suffix(".tmp")
        tmp.write_bytes(bytes(serialized))
        tmp.replace(self.engine_path)
        timing_cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))

    def _device_buffer(self, name: str, nbytes: int) -> int:
        pointer, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if pointer:
                _check(self._cudart.cudaFree(pointer))
            pointer = int(_check(self._cudart.cudaMalloc(nbytes)))
            self._buffers[name] = (pointer, nbytes)
        return pointer

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy inputs to the GPU, execute, copy outputs back (float32)."""
        trt, cudart = self._trt, self._cudart
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self.input_names:
            dtype = trt.nptype(self._engine.get_tensor_dtype(name))
            array = np.ascontiguousarray(inputs[name], dtype=dtype)
            self._context.set_input_shape(name, array.shape)
            pointer = self._device_buffer(name, array.nbytes)
            _check(cudart.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, h2d, self._stream))
            self._context.set_tensor_address(name, pointer)
        outputs: dict[str, np.ndarray] = {}
        for name in self.output_names:
            shape = tuple(self._context.get_tensor_shape(name))
            outputs[name] = np.empty(shape, dtype=trt.nptype(self._engine.get_tensor_dtype(name)))
            self._context.set_tensor_address(name, self._device_buffer(name, outputs[name].nbytes))
        if not self._context.execute_async_v3(self._stream):
            raise RuntimeError("TensorRT execution failed")
        for name, array in outputs.items():
            pointer = self._buffers[name][0]
            _check(cudart.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, d2h, self._stream))
        _check(cudart.cudaStreamSynchronize(self._stream))
        return {n: a.astype(np.float32, copy=False) for n, a in outputs.items()}
