import pytest

from inventory import restock


def test_restock_adds():
    assert restock(3, 2) == 5


def test_negative_is_refused():
    with pytest.raises(ValueError):
        restock(3, -1)
