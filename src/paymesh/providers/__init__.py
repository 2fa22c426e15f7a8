"""Providers service: connectors to external parties (the KYC vendor now; PSPs and the
partner bank later) and local simulators of each."""
