"""knox registers its tokens' admin (digest, user, created, expiry; deleting one revokes it).
DRF's plaintext tokens are not offered: they no longer authenticate, and the import empties them."""

from django.contrib import admin
from rest_framework.authtoken.models import TokenProxy

if admin.site.is_registered(TokenProxy):
    admin.site.unregister(TokenProxy)
