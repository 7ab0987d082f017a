"""django.contrib.admin with our admin site (identity.admin_site.StaffAdminSite) as the default.

A module of its own: INSTALLED_APPS imports it before the models are ready.
"""

from django.contrib.admin.apps import AdminConfig


class StaffAdminConfig(AdminConfig):
    default_site = "identity.admin_site.StaffAdminSite"
