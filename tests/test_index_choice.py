"""The index selector: exact while cheap, inverted lists past that, compressed codes to fit a budget."""

import pytest

from spyglass.search.store.index_choice import candidates, choose, inverted_lists, is_auto, ladder, needs_training_points

GiB = 1024**3


@pytest.mark.parametrize("count", [0, 1, 1_000, 50_000])
def test_small_libraries_stay_exact(count):
    assert choose(count, 512, 4 * GiB).factory == "Flat"
    assert ladder(count, 512, 4 * GiB) == candidates(count, 512)[-1:]


def test_lower_dimensions_stay_exact_for_longer():
    assert choose(100_000, 256, 4 * GiB).factory == "Flat"
    assert choose(100_000, 512, 4 * GiB).factory != "Flat"


def test_a_million_vectors_with_room_get_full_vectors_in_inverted_lists():
    chosen = choose(1_000_000, 512, 6 * GiB)
    assert chosen.factory == "IVF4096,Flat" and chosen.bytes <= 6 * GiB


@pytest.mark.parametrize(("memory", "expected"), [
    (6 * GiB, "IVF4096,Flat"),
    (1 * GiB, "IVF4096,SQ8"),
    (300 * 1024**2, "IVF4096,PQ256x4fs"),
    (100 * 1024**2, "IVF4096,PQ128x4fs"),
    (60 * 1024**2, "IVF4096,PQ64x4fs"),
    (40 * 1024**2, "IVF4096,PQ32x4fs"),
    (10 * 1024**2, "IVF4096,PQ32x4fs"),  # nothing fits: the most compressed there is
])
def test_a_smaller_budget_gets_more_compressed_codes(memory, expected):
    chosen = choose(1_000_000, 512, memory)
    assert chosen.factory == expected


def test_ten_million_vectors_fit_in_four_gib():
    chosen = choose(10_000_000, 512, 4 * GiB)
    assert chosen.factory == "IVF16384,PQ256x4fs" and chosen.bytes <= 4 * GiB


def test_the_ladder_falls_back_to_exact_search():
    steps = ladder(2_000_000, 512, 2 * GiB)
    assert [s.factory for s in steps] == ["IVF4096,SQ8", "Flat"]


def test_list_counts_grow_with_the_square_root_and_leave_enough_points_to_train():
    assert inverted_lists(1_000_000) == 4096
    assert inverted_lists(100_000_000) == 32768
    assert inverted_lists(10**12) == 65536  # capped
    assert inverted_lists(60_000) == 1024
    for count in (60_000, 200_000, 5_000_000):
        assert count // inverted_lists(count) >= 39


def test_every_candidate_is_a_buildable_factory_string():
    from spyglass.search.store.ann import new_ann

    for choice in candidates(60_000, 64):
        new_ann(64, choice.factory)


def test_auto_and_training_sizes():
    assert is_auto("auto") and is_auto(" Auto ") and not is_auto("Flat")
    assert needs_training_points("IVF4096,Flat") == 4096 * 39
    assert needs_training_points("Flat") == 0
    assert needs_training_points("PQ64") == 256 * 39
