from django.contrib import admin

from o2o.staff.models import StaffScope


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

    @admin.display(description="stores")
    def store_codes(self, obj: StaffScope) -> str:
        return "all" if obj.all_stores else ", ".join(s.code for s in obj.stores.all()) or "-"

    @admin.display(description="roles")
    def roles(self, obj: StaffScope) -> str:
        return ", ".join(g.name for g in obj.user.groups.all()) or "-"
