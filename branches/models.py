from django.conf import settings
from django.db import models
from django.db.models import Q


class Branch(models.Model):
    """A self-service laundry branch, run by its owner."""

    name = models.CharField(max_length=200)
    code = models.SlugField(max_length=50, unique=True)
    address = models.CharField(max_length=300, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_branches")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "branches"

    def __str__(self) -> str:
        return self.name


class Helper(models.Model):
    """A user who works at one branch and registers its laundry tasks (the mobile app)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="helper")
    branch = models.ForeignKey(Branch, on_delete=models.PROTECT, related_name="helpers")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} at {self.branch}"


class PriceLevel(models.IntegerChoices):
    BUDGET = 1
    STANDARD = 2
    PREMIUM = 3


class BranchProfile(models.Model):
    """What a branch offers and where it is: what customers' preferences are matched against."""

    branch = models.OneToOneField(Branch, on_delete=models.CASCADE, related_name="profile")
    price_level = models.PositiveSmallIntegerField(choices=PriceLevel.choices, default=PriceLevel.STANDARD)
    dry_cleaning = models.BooleanField(default=False)
    open_24_hours = models.BooleanField(default=False)
    eco_detergents = models.BooleanField(default=False)
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(latitude__isnull=True) & Q(longitude__isnull=True))
                | (Q(latitude__range=(-90, 90)) & Q(longitude__range=(-180, 180))),
                name="branch_profile_location_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"profile of {self.branch}"


class BranchOffer(models.Model):
    """A branch profile or offer an owner published; matching customers get a recommendation.

    It keeps the profile as published, so a redelivered event matches the same customers
    even after the profile changed.
    """

    branch = models.ForeignKey(Branch, on_delete=models.CASCADE, related_name="offers")
    title = models.CharField(max_length=120)
    body = models.CharField(max_length=500, blank=True)
    price_level = models.PositiveSmallIntegerField(choices=PriceLevel.choices)
    dry_cleaning = models.BooleanField()
    open_24_hours = models.BooleanField()
    eco_detergents = models.BooleanField()
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    published_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-published_at", "-id"]

    def __str__(self) -> str:
        return f"{self.title} ({self.branch})"


class CustomerPreference(models.Model):
    """A customer's wishes; a published offer that fulfils all of them is recommended to them."""

    customer = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preference")
    receive_recommendations = models.BooleanField(default=True)
    max_price_level = models.PositiveSmallIntegerField(
        choices=PriceLevel.choices, null=True, blank=True, help_text="Empty: any price level."
    )
    wants_dry_cleaning = models.BooleanField(default=False)
    wants_24_hours = models.BooleanField(default=False)
    wants_eco_detergents = models.BooleanField(default=False)
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    max_distance_km = models.FloatField(null=True, blank=True, help_text="Empty: any distance.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(max_distance_km__isnull=True)
                | (Q(max_distance_km__gt=0) & Q(latitude__range=(-90, 90)) & Q(longitude__range=(-180, 180))),
                name="customer_preference_distance_needs_location",
            ),
        ]

    def __str__(self) -> str:
        return f"preferences of {self.customer}"
