"""Local simulators of the external parties the connectors speak to, served over real HTTP
so demos and tests exercise the same code paths as production."""
