from django.contrib import admin
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from inventory.staff.models import StaffScope

# The role groups' names are data (inventory.staff.roles); listed here so makemessages keeps their translations
# (tests/admin/test_i18n.py checks the list against the roles).
ROLE_NAMES = (gettext_noop("Head office"), gettext_noop("Regional manager"), gettext_noop("Store staff"))


@admin.register(StaffScope)
class StaffScopeAdmin(admin.ModelAdmin):
    """Who works where. The role (what they may do) is the user's group: Head office, Regional manager, Store staff."""

    list_display = ("user", "all_stores", "store_codes", "roles")
    list_filter = ("all_stores", "user__groups")
    search_fields = ("user__username", "stores__code")
    autocomplete_fields = ("user",)
    filter_horizontal = ("stores",)
    list_select_related = ("user",)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("stores", "user__groups")

    @admin.display(description=gettext_lazy("stores"))
    def store_codes(self, obj: StaffScope) -> str:
        return _("all") if obj.all_stores else ", ".join(s.code for s in obj.stores.all()) or "-"

    @admin.display(description=gettext_lazy("roles"))
    def roles(self, obj: StaffScope) -> str:
        return ", ".join(_(g.name) for g in obj.user.groups.all()) or "-"
