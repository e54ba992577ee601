from django.contrib import admin

from branches.models import Branch, BranchOffer, BranchProfile, CustomerPreference, Helper
from branches.owner_admin import BranchOwnerAccess
from branches.services import branch_offer_publish


class BranchProfileInline(admin.StackedInline):
    model = BranchProfile
    can_delete = False


@admin.register(Branch)
class BranchAdmin(admin.ModelAdmin):
    list_display = ("name", "code", "owner", "created_at")
    search_fields = ("name", "code")
    inlines = [BranchProfileInline]


@admin.register(Helper)
class HelperAdmin(admin.ModelAdmin):
    list_display = ("user", "branch", "created_at")
    list_filter = ("branch",)


@admin.register(BranchOffer)
class BranchOfferAdmin(BranchOwnerAccess, admin.ModelAdmin):
    """Publishing an offer snapshots the branch's profile and recommends it to matching customers.

    Owners (staff without model permissions) publish and see the offers of their own branches.
    """

    list_display = ("published_at", "title", "branch", "price_level", "dry_cleaning", "open_24_hours",
                    "eco_detergents", "published_by")
    list_filter = ("branch",)
    list_select_related = ("branch", "published_by")
    fields = ("branch", "title", "body")

    def has_add_permission(self, request):
        return super().has_add_permission(request) or self.is_branch_owner(request)

    def has_change_permission(self, request, obj=None):
        return False  # a published offer was sent as it is

    def get_queryset(self, request):
        offers = super().get_queryset(request)
        return offers if request.user.is_superuser else offers.filter(branch__owner=request.user)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "branch" and not request.user.is_superuser:
            kwargs["queryset"] = Branch.objects.filter(owner=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

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
