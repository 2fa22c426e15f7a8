"""The OAuth2 / OpenID Connect provider: Authlib's protocol logic behind a thin Starlette
adapter (`exchange.py`, `server.py`), identity's grants (`grants.py`), revocation and
introspection (`endpoints.py`), the browser pages (`pages.py`) and the routes (`routes.py`).
"""
