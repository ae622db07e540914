from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class StaffConfig(AppConfig):
    """Who works where: each staff member's store scope, and the roles (groups of Django permissions) of head
    office, regional managers and store staff. The admin's StoreScopedAdmin reads the scope."""

    name = "inventory.staff"
    label = "staff"
    verbose_name = _("Staff and store scope")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # After every migrate (and after a test database is flushed) the roles exist with their current permissions.
        post_migrate.connect(_ensure_roles, dispatch_uid="inventory.staff.ensure_roles")
        # Installed after every app with an admin, so autodiscovery has registered them all by now.
        from django.contrib import admin

        from inventory.staff.scope import scope_admin_site

        scope_admin_site(admin.site)


def _ensure_roles(sender, using="default", **kwargs) -> None:
    if sender.label != "staff":
        return
    from inventory.staff.roles import ensure_roles

    ensure_roles(using=using)
