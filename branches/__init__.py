"""Branches of the laundry chain, their owners and their helpers."""
