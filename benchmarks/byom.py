"""``ainode bench byom``: a MONAI bundle's network in torch vs on ONNX Runtime, in the same run.

The bundle runs as the generic pack runs it (MONAI's pre- and post-processing around the
network in the bundle's inferer), once with ``engine = "torch"`` and once with ``engine =
"auto"`` (the network exported to ONNX, on ONNX Runtime CPU), on the same brain MR phantom
series. Reported: the median seconds of the network calls inside the inferer, and of the whole
bundle (preprocessing + inferer + postprocessing), per engine, and their ratio.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["run_byom_bench"]


class _Timed:
    """A network (torch module or ONNX) that adds the seconds of each call to ``seconds``."""

    def __init__(self, network: Any) -> None:
        self.network, self.seconds = network, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.network(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def run_byom_bench(bundle: Path | None, iterations: int = 5, slices: int = 32, size: int = 128) -> dict[str, Any]:
    """Time the bundle (the tests' phantom bundle, untrained, when ``bundle`` is ``None``) on both engines."""
    import torch

    from models.phantoms.brain_mr import generate_brain_mr
    from node.packs.generic.monai_bundle import BundleRunner
    from node.packs.generic.spec import ModelSpec
    from node.packs.generic.volume import series_volume

    work = Path(tempfile.mkdtemp(prefix="ainode-bench-byom-"))
    if bundle is None:
        from tests.byom_support import make_bundle  # the tests' bundle layout, 0 training steps

        bundle = make_bundle(work / "bundle", work / "training", steps=0, seeds=(1,))
    volume = series_volume(generate_brain_mr(seed=1, slices=slices, size=size, contrasts=("T1",)).series["T1"])
    inputs = {"image": volume.data[None], "affine": volume.affine[None]}
    rows: dict[str, Any] = {"threads": torch.get_num_threads(), "shape": list(volume.data.shape)}
    for engine in ("torch", "auto"):
        runner = BundleRunner(ModelSpec(name="bench", format="monai-bundle", path=str(bundle), engine=engine))
        runner.network = timed = _Timed(runner.network)
        runner.run(inputs)  # warm-up
        network, whole = [], []
        for _ in range(iterations):
            timed.seconds = 0.0
            started = time.perf_counter()
            runner.run(inputs)
            whole.append(time.perf_counter() - started)
            network.append(timed.seconds)
        rows[engine] = {"engine": runner.name, "network_s": statistics.median(network),
                        "bundle_s": statistics.median(whole)}
    rows["network_ratio"] = rows["torch"]["network_s"] / rows["auto"]["network_s"]
    rows["bundle_ratio"] = rows["torch"]["bundle_s"] / rows["auto"]["bundle_s"]
    return rows


def main() -> None:
    """Print the comparison as a Markdown table."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, help="a MONAI bundle folder (default: the tests' phantom bundle)")
    parser.add_argument("--iterations", type=int, default=5, help="timed runs per engine (medians reported)")
    args = parser.parse_args()
    rows = run_byom_bench(args.bundle, args.iterations)
    print(f"input {rows['shape']} (slice, row, column), torch threads {rows['threads']}\n")
    print("| engine | network in the inferer (s, median) | whole bundle (s, median) |\n| --- | --- | --- |")
    for key in ("torch", "auto"):
        print(f"| {rows[key]['engine']} | {rows[key]['network_s']:.3f} | {rows[key]['bundle_s']:.3f} |")
    print(f"| ratio torch / ONNX Runtime | {rows['network_ratio']:.2f}x | {rows['bundle_ratio']:.2f}x |")


if __name__ == "__main__":
    main()
