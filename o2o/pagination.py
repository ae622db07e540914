"""List pagination for every API list: `?limit=&offset=`, where a value that is not a whole number (or is
negative) is a 400 instead of being silently replaced by the default, as DRF's own class does."""

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination


class StrictLimitOffsetPagination(LimitOffsetPagination):
    max_limit = 500

    def _whole_number(self, request, name: str) -> None:
        raw = request.query_params.get(name)
        if raw is not None and not (raw.isascii() and raw.isdigit()):
            raise ValidationError({name: ["A whole number, 0 or more."]})

    def get_limit(self, request):
        self._whole_number(request, self.limit_query_param)
        return super().get_limit(request)

    def get_offset(self, request):
        self._whole_number(request, self.offset_query_param)
        return super().get_offset(request)
