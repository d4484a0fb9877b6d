"""Place names for a position, offline: GeoNames' cities of 1,000 people or more (reverse-geocode's data)."""

from __future__ import annotations

import math
import threading

# Further than this from any town (the open sea, a glacier), a position has no place name.
NEAREST_KM = 50.0
# A town this close to a city of BIG_CITY people is named with it ('Vanves, Paris, ...'), so that
# 'Paris' finds the photos taken in its suburbs too.
BIG_CITY_KM, BIG_CITY = 25.0, 100_000
_lock = threading.Lock()


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def place_name(latitude: float, longitude: float) -> str | None:
    """'Vanves, Paris, Île-de-France, France' for a position near them; None far from any town."""
    import reverse_geocode

    with _lock:  # its first call loads the cities; later calls only query the tree
        near = dict(reverse_geocode.get((latitude, longitude)))
        big = dict(reverse_geocode.get((latitude, longitude), min_population=BIG_CITY))
    if distance_km(latitude, longitude, near["latitude"], near["longitude"]) > NEAREST_KM:
        return None
    parts = [near.get("city")]
    if big.get("city") != near.get("city") and big.get("country_code") == near.get("country_code") and \
            distance_km(latitude, longitude, big["latitude"], big["longitude"]) <= BIG_CITY_KM:
        parts.append(big.get("city"))
    parts += [near.get("state"), near.get("country")]
    return ", ".join(dict.fromkeys(part for part in parts if part)) or None
