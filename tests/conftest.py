"""Fixtures shared by the test modules: the synthetic data dir of the script tests and the reverse task of the
fairseq command-line tests, each made once per session (the tests only read them)."""
import pytest

from tests.reverse_task import make_reverse_task
from tests.synthetic_data import make_data_dir


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """A data dir in the layout of data-bin-prep/prepare.py (tests/synthetic_data.py)."""
    return make_data_dir(tmp_path_factory.mktemp("synthetic") / "data")


@pytest.fixture(scope="session")
def reverse_task(tmp_path_factory):
    """The reverse task's text and binaries (tests/reverse_task.py)."""
    return make_reverse_task(tmp_path_factory.mktemp("reverse"))
