"""Profiles service: who a customer is (legal name, date of birth, address, contact), their
KYC submissions and level, and the limits that level allows."""
