import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    # The CD tests run many small ops (tests/conftest.py's one_thread); autouse at module
    # scope: it must already hold when module-scoped fixtures train models.
    yield
