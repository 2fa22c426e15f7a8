"""Paymesh: an open-source payment services platform."""

__version__ = "0.1.0"
