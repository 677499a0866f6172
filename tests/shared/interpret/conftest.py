import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The CD tests run many small ops; on a shared machine two threads mostly wait on each
    # other. Module scope: it must already hold when module-scoped fixtures train models.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
