"""Fixtures shared by mmcl's test packages."""

import pytest


@pytest.fixture
def one_thread():
    """torch and the BLAS/OpenMP pools at one thread for the test, restored after."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)
