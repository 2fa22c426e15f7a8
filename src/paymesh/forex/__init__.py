"""The forex service: reference rates, conversions and quotes with a locked rate."""
