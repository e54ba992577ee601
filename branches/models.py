from django.conf import settings
from django.db import models


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
