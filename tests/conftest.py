"""Test-suite-wide fixtures."""

import gc

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop JAX's compiled executables after each test module.

    Each XLA CPU executable keeps its machine code in its own memory mappings; compiling a
    whole-body model adds about a thousand. A test worker that compiles hundreds of models
    reaches the kernel's per-process limit (vm.max_map_count, 65,530 by default), and XLA's
    compiler then crashes on the next mmap. Clearing the caches between modules frees them;
    a later module recompiles what it needs.
    """
    yield
    jax.clear_caches()
    gc.collect()
