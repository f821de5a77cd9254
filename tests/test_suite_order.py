"""The suite's own dealing (tests/conftest.py): daemon tests first, one per worker's first hand, none lost."""

import pytest

from tests.conftest import pytest_collection_modifyitems


class Item:
    def __init__(self, name: str, daemon: bool):
        self.name, self.daemon, self.fixturenames = name, daemon, ()

    def get_closest_marker(self, name: str):
        return pytest.mark.daemon if name == "daemon" and self.daemon else None

    def add_marker(self, marker):
        pass


@pytest.mark.parametrize(("daemons", "others"), [(4, 10), (4, 1), (2, 0), (0, 3), (1, 1)])
def test_daemon_tests_lead_each_first_hand_and_none_is_dropped(daemons, others):
    items = [Item(f"o{n}", False) for n in range(others)] + [Item(f"d{n}", True) for n in range(daemons)]
    before = {item.name for item in items}
    pytest_collection_modifyitems(items)
    assert {item.name for item in items} == before and len(items) == len(before)
    paired = min(daemons, others)
    # xdist deals two tests to each worker first: each hand of two holds one daemon test while others last.
    assert [item.daemon for item in items[: 2 * paired]] == [True, False] * paired
    assert all(item.daemon for item in items[2 * paired: daemons + paired])
