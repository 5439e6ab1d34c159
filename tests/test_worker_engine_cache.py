"""The per-process engine cache of the worker: one engine per distinct engine selection."""
from __future__ import annotations

from dataclasses import replace

import pytest

from node.worker import JobSpec, engine_cache_key


def _spec(**fields) -> JobSpec:
    base = JobSpec(
        job_id=1, model="head-ct-a", pack="head-ct-hematoma", weights=None, engine="triton",
        batch_size=None, instance_paths=("a.dcm",), out_dir="out", engine_cache_dir="cache",
        triton_url="127.0.0.1:8000", triton_model="head-ct-a",
    )
    return replace(base, **fields)


def test_two_triton_models_on_one_server_get_their_own_engine():
    assert engine_cache_key(_spec(triton_model="a")) != engine_cache_key(_spec(triton_model="b"))


def test_identical_specs_share_the_engine_whatever_the_job():
    assert engine_cache_key(_spec()) == engine_cache_key(_spec())
    assert engine_cache_key(_spec()) == engine_cache_key(
        _spec(job_id=7, instance_paths=("b.dcm", "c.dcm"), out_dir="elsewhere")
    )


@pytest.mark.parametrize(
    "change",
    [
        {"model": "head-ct-b"},
        {"pack": "cxr-nodule"},
        {"weights": "/w/other.onnx"},
        {"engine": "onnxruntime-cpu"},
        {"triton_url": "10.0.0.2:8000"},
        {"triton_model": "other"},
        {"batch_size": 4},
        {"engine_cache_dir": "other-cache"},
    ],
)
def test_every_field_that_selects_the_engine_is_in_the_key(change):
    assert engine_cache_key(_spec()) != engine_cache_key(_spec(**change))


def test_unset_triton_model_means_the_model_name():
    # the engine is built with triton_model or model: both spellings select the same engine
    assert engine_cache_key(_spec(triton_model=None)) == engine_cache_key(_spec(triton_model="head-ct-a"))


def test_the_key_is_hashable():
    assert {engine_cache_key(_spec()): 1}
