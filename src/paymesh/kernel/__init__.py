"""Shared machinery every Paymesh service stands on; no business rules live here."""
