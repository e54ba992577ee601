from django.contrib import admin

from branches.models import Branch, Helper


@admin.register(Branch)
class BranchAdmin(admin.ModelAdmin):
    list_display = ("name", "code", "owner", "created_at")
    search_fields = ("name", "code")


@admin.register(Helper)
class HelperAdmin(admin.ModelAdmin):
    list_display = ("user", "branch", "created_at")
    list_filter = ("branch",)
