from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from inventory.models import Store


class StaffScope(models.Model):
    """The stores one staff member works for: every store (head office), a set of stores (a regional manager) or
    one store (store staff). What they may do there comes from their Django permissions (their role's group).

    A staff user without a scope sees no store-bound rows at all: access to a store is granted, never assumed.
    Superusers see every store."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_scope")
    all_stores = models.BooleanField(default=False, help_text="Head office: every store of the chain, present and future.")
    stores = models.ManyToManyField(Store, blank=True, related_name="+", help_text="The stores this person works for.")

    class Meta:
        verbose_name_plural = _("staff store scopes")
        verbose_name = _("staff store scope")

    def __str__(self) -> str:
        return f"{self.user} ({'all stores' if self.all_stores else 'stores'})"
