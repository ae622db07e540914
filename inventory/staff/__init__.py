"""Staff roles and store scope for the operations admin.

- Roles are Django groups (inventory.staff.roles.ROLES): Head office, Regional manager, Store staff. `manage.py setup_roles`
  (also run after every migrate) keeps them up to date; `manage.py create_staff NAME --role store --stores CODE
  --password ...` makes a user with a role and a scope.
- Where someone works is their StaffScope: every store, or a set of stores. No scope means no store's rows.
- A store-bound ModelAdmin inherits inventory.staff.scope.StoreScopedAdmin (naming the path to its store), or is listed in
  STORE_PATHS there, which wraps it at start-up. tests/admin/test_matrix.py holds every store-bound admin to it.
"""
