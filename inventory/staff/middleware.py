"""Admin pages in the time zone of the staff member's stores.

Store staff and a regional manager whose stores all share one zone read every time in the admin (lists, change
pages, the board's "today", the queue) in that zone; head office, superusers and anyone whose stores span several
zones read the chain's zone (settings.TIME_ZONE). The API is left alone: it speaks ISO 8601 with offsets."""

from collections.abc import Callable
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone


@cache
def _admin_prefix() -> str:
    try:
        return reverse("admin:index")
    except NoReverseMatch:  # a URLconf without the admin
        return "\0"


def staff_time_zone(request: HttpRequest) -> str:
    """The zone name the request's user reads admin times in. One query per request at most, cached on it."""
    cached = getattr(request, "_o2o_time_zone", None)
    if cached is not None:
        return cached
    user = request.user
    zone = settings.TIME_ZONE
    if user.is_authenticated and user.is_staff and not user.is_superuser:
        from inventory.staff.models import StaffScope

        # One row per store (or one row with a NULL zone for an empty scope): all_stores and the zones together.
        rows = set(StaffScope.objects.filter(user=user).values_list("all_stores", "stores__timezone").distinct())
        zones = {tz for all_stores, tz in rows if tz and not all_stores}
        if len(zones) == 1 and not any(all_stores for all_stores, _ in rows):
            zone = zones.pop()
    request._o2o_time_zone = zone
    return zone


class StoreTimeZoneMiddleware:
    """Activates staff_time_zone() for admin requests (after AuthenticationMiddleware: it needs request.user)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(_admin_prefix()):
            return self.get_response(request)
        try:
            zone = ZoneInfo(staff_time_zone(request))
        except (ZoneInfoNotFoundError, ValueError):
            # A mistyped store zone must not take the admin down: fall back to the chain's zone.
            zone = ZoneInfo(settings.TIME_ZONE)
        timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            # The zone is thread-local: the next request served by this thread starts from the default again.
            timezone.deactivate()
