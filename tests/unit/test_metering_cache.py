"""The authorizer's key cache: entries expire, each map is bounded, eviction is least recently used, and
unknown keys never push out found ones."""

from __future__ import annotations

import threading

import pytest

from tollgate.metering.dynamo import TtlCache
from tollgate.metering.settings import DEFAULT_KEY_CACHE_MAX_ENTRIES, DEFAULT_NEGATIVE_CACHE_MAX_ENTRIES


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    cache = TtlCache(clock=clock)
    cache.put("found", "grant", ttl=30)
    cache.put("unknown", None, ttl=5)

    assert cache.get("found") == (True, "grant")
    assert cache.get("unknown") == (True, None)
    clock.now += 5
    assert cache.get("unknown") == (False, None)
    assert cache.get("found") == (True, "grant")
    clock.now += 25
    assert cache.get("found") == (False, None)
    assert len(cache) == 0


def test_a_ttl_of_zero_caches_nothing() -> None:
    cache = TtlCache()
    cache.put("k", "v", ttl=0)
    assert cache.get("k") == (False, None)


def test_each_map_is_bounded_and_evicts_the_least_recently_used() -> None:
    cache = TtlCache(max_entries=3, max_negative_entries=2, clock=Clock())
    for name in ("a", "b", "c"):
        cache.put(name, name.upper(), ttl=30)
    assert cache.get("a") == (True, "A")  # a is now the most recently used
    cache.put("d", "D", ttl=30)

    assert cache.get("b") == (False, None)  # the least recently used went
    assert [cache.get(n)[0] for n in ("a", "c", "d")] == [True, True, True]
    assert cache.sizes() == (3, 0)


def test_a_flood_of_unknown_keys_never_evicts_a_found_key() -> None:
    cache = TtlCache(max_entries=2, max_negative_entries=100, clock=Clock())
    cache.put("customer", "grant", ttl=30)

    for n in range(10_000):
        cache.put(f"random-{n}", None, ttl=5)

    assert cache.get("customer") == (True, "grant")
    assert cache.sizes() == (1, 100)
    assert cache.get("random-9999") == (True, None)
    assert cache.get("random-0") == (False, None)


def test_a_key_moves_between_the_maps_when_it_becomes_known() -> None:
    clock = Clock()
    cache = TtlCache(clock=clock)
    cache.put("k", None, ttl=5)
    cache.put("k", "grant", ttl=30)
    assert cache.get("k") == (True, "grant")
    assert cache.sizes() == (1, 0)
    cache.put("k", None, ttl=5)
    assert cache.get("k") == (True, None)
    assert cache.sizes() == (0, 1)


def test_expired_entries_at_the_cold_end_are_dropped_on_put() -> None:
    clock = Clock()
    cache = TtlCache(max_negative_entries=1000, clock=clock)
    for n in range(500):
        cache.put(f"old-{n}", None, ttl=5)
    clock.now += 6
    cache.put("new", None, ttl=5)
    assert cache.sizes() == (0, 1)


def test_clear_empties_both_maps() -> None:
    cache = TtlCache()
    cache.put("a", "A", ttl=30)
    cache.put("b", None, ttl=5)
    cache.clear()
    assert cache.sizes() == (0, 0)


def test_defaults_bound_both_maps() -> None:
    cache = TtlCache(clock=Clock())
    for n in range(DEFAULT_NEGATIVE_CACHE_MAX_ENTRIES + 50):
        cache.put(f"u{n}", None, ttl=5)
    for n in range(DEFAULT_KEY_CACHE_MAX_ENTRIES + 50):
        cache.put(f"f{n}", n, ttl=30)
    assert cache.sizes() == (DEFAULT_KEY_CACHE_MAX_ENTRIES, DEFAULT_NEGATIVE_CACHE_MAX_ENTRIES)


def test_a_cache_needs_room_for_one_entry() -> None:
    with pytest.raises(ValueError, match="at least one"):
        TtlCache(max_negative_entries=0)


def test_threads_sharing_the_cache_never_see_an_error_and_the_bound_holds() -> None:
    clock = Clock()
    cache = TtlCache(max_entries=50, max_negative_entries=50, clock=clock)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for n in range(2000):
                key = f"k{(n * seed) % 300}"
                cache.put(key, None if n % 2 else key, ttl=0.01 * (n % 7) + 0.001)
                cache.get(key)
                clock.now += 0.001
        except BaseException as error:  # pragma: no cover - the assertion below reports it
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in (1, 7, 13, 31)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    found, unknown = cache.sizes()
    assert found <= 50
    assert unknown <= 50


def test_an_entry_expiring_at_this_instant_is_dropped_on_put() -> None:
    clock = Clock()
    cache = TtlCache(clock=clock)
    cache.put("old", None, ttl=5)
    clock.now += 5  # "old" expires exactly now: get() already treats it as gone
    cache.put("new", None, ttl=5)
    assert cache.sizes() == (0, 1)


def test_len_counts_found_and_unknown_keys() -> None:
    cache = TtlCache(clock=Clock())
    cache.put("a", "A", ttl=30)
    cache.put("b", None, ttl=5)
    cache.put("c", None, ttl=5)
    assert len(cache) == 3


def test_a_ttl_of_zero_stores_nothing_at_all() -> None:
    cache = TtlCache(clock=Clock())
    cache.put("k", "v", ttl=0)
    cache.put("u", None, ttl=0)
    assert cache.sizes() == (0, 0)
