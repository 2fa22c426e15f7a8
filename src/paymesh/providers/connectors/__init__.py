"""Connectors to external parties, one interface per kind (`kyc.KycVendor` now; payment
service providers and the partner bank next), each with an HTTP implementation."""
