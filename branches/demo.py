"""Demo branch profiles and customers for `manage.py load_demo_data` (idempotent)."""

from django.contrib.auth import get_user_model

from branches.models import Branch, CustomerPreference, PriceLevel
from branches.services import branch_profile_update

DEMO_PROFILES = {
    # code: price level, dry cleaning, 24 hours, eco detergents, latitude, longitude
    "gangnam": (PriceLevel.PREMIUM, True, True, False, 37.4979, 127.0276),
    "mapo": (PriceLevel.BUDGET, False, False, True, 37.5663, 126.9019),
}

# username: max price level, dry cleaning, 24 hours, eco, latitude, longitude, max distance km
DEMO_CUSTOMERS = {
    "customer1": (None, False, False, False, None, None, None),  # anything goes
    "customer2": (PriceLevel.BUDGET, False, False, True, 37.5560, 126.9236, 5.0),  # cheap and green, near Hongdae
    "customer3": (None, True, True, False, 37.5045, 127.0490, 3.0),  # dry cleaning at night, near Gangnam
    "customer4": (PriceLevel.STANDARD, True, False, False, None, None, None),  # dry cleaning, not premium
    "customer5": (None, False, False, False, 35.1796, 129.0756, 10.0),  # lives in Busan
    "customer6": (None, False, True, True, None, None, None),  # 24 hours and eco: nobody offers both
}


def load_demo_data(*, stdout) -> None:
    for code, (price, dry, always_open, eco, lat, lon) in DEMO_PROFILES.items():
        branch = Branch.objects.filter(code=code).first()
        if branch is not None:
            branch_profile_update(branch=branch, price_level=price, dry_cleaning=dry, open_24_hours=always_open,
                                  eco_detergents=eco, latitude=lat, longitude=lon)
    User = get_user_model()
    for username, (max_price, dry, always_open, eco, lat, lon, distance) in DEMO_CUSTOMERS.items():
        customer, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        customer.set_password(f"{username}-pass")
        customer.save()
        CustomerPreference.objects.update_or_create(customer=customer, defaults=dict(
            receive_recommendations=True, max_price_level=max_price, wants_dry_cleaning=dry,
            wants_24_hours=always_open, wants_eco_detergents=eco, latitude=lat, longitude=lon,
            max_distance_km=distance,
        ))
    stdout.write(f"customers with preferences: {', '.join(DEMO_CUSTOMERS)} (password <username>-pass)")
