"""``ainode models train brain-mr --compare``: both skip variants x three weightings, and the every-4th-slice run."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from models.brain_mr.cases import phantom_cases, thinned
from models.brain_mr.evaluation import TEST_SEED_BASE, evaluate
from models.brain_mr.fit import WEIGHTINGS, FitOptions, export_onnx, train_model
from models.training import output_folder, quiet, save_weights, write_json

__all__ = ["compare"]


def compare(
    out_dir: Path,
    *,
    phantoms: int = 30,
    test_phantoms: int = 8,
    steps: int = 400,
    batch_size: int = 6,
    seed: int = 0,
    contrast: str = "T1",
    threads: int = 1,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Both skip variants × the three weightings, plus the every-4th-slice run.

    Every run uses the same training phantoms, steps and seed; the every-4th-slice run
    uses the best (variant, weighting) of the full-label runs. Held-out Dice per class
    of every run is written to ``out_dir/comparison.json``; each run's weights
    (``model.onnx``, ``model.pt``) and training facts are kept in ``out_dir/<run>/``.
    """
    say = quiet(log)
    out_dir = output_folder(out_dir)
    t0 = time.perf_counter()
    cases = phantom_cases(range(seed, seed + phantoms), contrast)
    test_seeds = list(range(TEST_SEED_BASE, TEST_SEED_BASE + test_phantoms))
    test_cases = phantom_cases(test_seeds, contrast)
    say(f"generated {phantoms} + {test_phantoms} phantoms in {time.perf_counter() - t0:.0f}s")
    runs: dict[str, Any] = {}

    def run(name: str, variant: str, weighting: str, every: int) -> None:
        options = FitOptions(variant=variant, weighting=weighting, steps=steps, batch_size=batch_size)
        model, facts = train_model(thinned(cases, every, seed), options, seed=seed, threads=threads, log=say)
        path = out_dir / name / "model.onnx"
        path.parent.mkdir(exist_ok=True)
        export_onnx(model, path)
        save_weights(model, path.with_name("model.pt"))
        write_json(path.with_name("facts.json"), facts)
        result = evaluate(path, test_seeds, cases=test_cases, threads=threads)
        runs[name] = {"variant": variant, "weighting": weighting, "label_every": every,
                      "training_seconds": facts["training_seconds"], "parameters": facts["parameters"],
                      "steps": steps, "batch_size": batch_size,
                      "dice": result["dice"], "mean_dice": result["mean_dice"],
                      "tumor_volume": result["tumor_volume"]}
        say(f"{name}: mean Dice {result['mean_dice']} {json.dumps(result['dice'])}")
        _write_comparison(out_dir, runs, phantoms, seed, test_seeds, steps, contrast)

    for variant in ("unet", "frru"):
        for weighting in WEIGHTINGS:
            run(f"{variant}-{weighting}", variant, weighting, 1)
    best = max((r for r in runs.values() if r["label_every"] == 1), key=lambda r: r["mean_dice"])
    run(f"{best['variant']}-{best['weighting']}-every4", best["variant"], best["weighting"], 4)
    return _write_comparison(out_dir, runs, phantoms, seed, test_seeds, steps, contrast)


def _write_comparison(out_dir: Path, runs: dict, phantoms: int, seed: int, test_seeds: list[int],
                      steps: int, contrast: str) -> dict[str, Any]:
    """Write ``out_dir/comparison.json`` (the runs so far); returns what it wrote."""
    summary = {
        "training_seeds": [seed, seed + phantoms - 1],
        "test_seeds": [test_seeds[0], test_seeds[-1]],
        "steps_per_run": steps,
        "contrast": contrast,
        "runs": runs,
    }
    write_json(out_dir / "comparison.json", summary)
    return summary
