from django.contrib import admin

from branches.models import Branch, BranchOffer, BranchProfile, CustomerPreference, Helper
from branches.owner_admin import BranchOwnerAccess, OwnBranchListFilter
from branches.services import PROFILE_FIELDS, branch_offer_publish, branch_profile_update


class BranchProfileInline(admin.StackedInline):
    model = BranchProfile
    can_delete = False


@admin.register(Branch)
class BranchAdmin(BranchOwnerAccess, admin.ModelAdmin):
    """Every branch for superusers; an owner sees their own (read-only) and edits their profiles."""

    branch_path = ""
    list_display = ("name", "code", "owner", "created_at")
    search_fields = ("name", "code")
    inlines = [BranchProfileInline]


@admin.register(Helper)
class HelperAdmin(admin.ModelAdmin):
    list_display = ("user", "branch", "created_at")
    list_filter = ("branch",)


@admin.register(BranchProfile)
class BranchProfileAdmin(BranchOwnerAccess, admin.ModelAdmin):
    """What a branch offers and where it is: the owner keeps it up to date, then publishes an offer.

    Saved through branches.services.branch_profile_update. A change reaches customers only
    when the owner publishes an offer (Branch offers), which keeps the profile as published.
    """

    owner_can_add = True
    owner_can_change = True
    list_display = ("branch", "price_level", "dry_cleaning", "open_24_hours", "eco_detergents", "latitude",
                    "longitude", "updated_at")
    list_filter = (("branch", OwnBranchListFilter), "price_level")
    search_fields = ("branch__name", "branch__code")
    list_select_related = ("branch",)
    fields = ("branch", *PROFILE_FIELDS)

    def has_delete_permission(self, request, obj=None):
        return False  # a branch keeps its profile; offers copy it

    def get_readonly_fields(self, request, obj=None):
        return ("branch",) if obj is not None else ()

    def save_model(self, request, obj, form, change):
        profile = branch_profile_update(
            branch=obj.branch, **{name: form.cleaned_data[name] for name in PROFILE_FIELDS}
        )
        obj.pk, obj.updated_at = profile.pk, profile.updated_at


@admin.register(BranchOffer)
class BranchOfferAdmin(BranchOwnerAccess, admin.ModelAdmin):
    """Publishing an offer snapshots the branch's profile and recommends it to matching customers.

    Owners (staff without model permissions) publish and see the offers of their own branches.
    """

    owner_can_add = True
    list_display = ("published_at", "title", "branch", "price_level", "dry_cleaning", "open_24_hours",
                    "eco_detergents", "published_by")
    list_filter = (("branch", OwnBranchListFilter),)
    search_fields = ("title", "body")
    list_select_related = ("branch", "published_by")
    fields = ("branch", "title", "body")

    def has_change_permission(self, request, obj=None):
        return False  # a published offer was sent as it is

    def save_model(self, request, obj, form, change):
        offer = branch_offer_publish(
            branch=obj.branch, title=obj.title, body=obj.body, published_by=request.user
        )
        obj.pk = offer.pk
        self.message_user(request, "Published: matching customers get a recommendation within seconds.")


@admin.register(CustomerPreference)
class CustomerPreferenceAdmin(admin.ModelAdmin):
    list_display = ("customer", "receive_recommendations", "max_price_level", "wants_dry_cleaning",
                    "wants_24_hours", "wants_eco_detergents", "max_distance_km")
    list_filter = ("receive_recommendations", "wants_dry_cleaning", "wants_24_hours", "wants_eco_detergents")
    search_fields = ("customer__username",)
    list_select_related = ("customer",)
