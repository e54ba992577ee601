from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, Q, QuerySet

from branches.models import Branch, BranchOffer, CustomerPreference, Helper


def helper_branch(*, user: AbstractBaseUser) -> Branch | None:
    """The branch a user works at as a helper, or None when they are not a helper.

    Free when the user came with it: API token authentication loads the helper row and its
    branch with the user in its one query (accounts/authentication.py). Else one query.
    """
    helper_of_user = Helper.user.field.remote_field  # the reverse one-to-one, user.helper
    if helper_of_user.is_cached(user):
        helper = helper_of_user.get_cached_value(user)  # None: loaded, and not a helper
        if helper is None:
            return None
        if Helper.branch.is_cached(helper):
            return helper.branch
    helper = Helper.objects.select_related("branch").filter(user_id=user.pk).first()
    return helper.branch if helper else None


def owns_a_branch(*, user: AbstractBaseUser) -> bool:
    """Whether the user owns at least one branch."""
    return Branch.objects.filter(owner_id=user.pk).exists()


def branch_list_owned_by(*, user: AbstractBaseUser) -> QuerySet[Branch]:
    """The branches the user owns, by name."""
    return Branch.objects.filter(owner_id=user.pk).order_by("name", "pk")


EARTH_RADIUS_KM = 6371.0


def _distance_km_from(latitude: float, longitude: float):
    """The great-circle (haversine) distance in km from a point to each row's latitude/longitude."""
    from django.db.models import Value
    from django.db.models.functions import ASin, Cos, Least, Power, Radians, Sin, Sqrt

    lat, lon = Radians(F("latitude")), Radians(F("longitude"))
    lat0, lon0 = Radians(Value(latitude)), Radians(Value(longitude))
    a = Power(Sin((lat - lat0) / 2), 2) + Cos(lat0) * Cos(lat) * Power(Sin((lon - lon0) / 2), 2)
    return 2 * EARTH_RADIUS_KM * ASin(Least(Sqrt(a), Value(1.0)))


def customer_ids_matching_offer(*, offer: BranchOffer) -> QuerySet:
    """The ids of the customers whose preferences the offer fulfils: one query, in the database.

    A customer matches when they want recommendations and every wish they have is met: a
    price level at most their maximum, dry cleaning, 24-hour opening and eco detergents when
    they ask for them, and a branch within their maximum distance (an offer without a
    location matches only customers without a distance limit).
    """
    preferences = CustomerPreference.objects.filter(receive_recommendations=True, customer__is_active=True).filter(
        Q(max_price_level__isnull=True) | Q(max_price_level__gte=offer.price_level)
    )
    for offered, wish in (
        (offer.dry_cleaning, "wants_dry_cleaning"),
        (offer.open_24_hours, "wants_24_hours"),
        (offer.eco_detergents, "wants_eco_detergents"),
    ):
        if not offered:
            preferences = preferences.filter(**{wish: False})
    if offer.latitude is None or offer.longitude is None:
        preferences = preferences.filter(max_distance_km__isnull=True)
    else:
        preferences = preferences.alias(distance_km=_distance_km_from(offer.latitude, offer.longitude)).filter(
            Q(max_distance_km__isnull=True) | Q(distance_km__lte=F("max_distance_km"))
        )
    return preferences.order_by("customer_id").values_list("customer_id", flat=True)


def offer_get(*, offer_id: int) -> BranchOffer | None:
    return BranchOffer.objects.select_related("branch").filter(pk=offer_id).first()
