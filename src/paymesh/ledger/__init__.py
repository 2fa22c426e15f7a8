"""Ledger service: double-entry accounts and transfers."""
