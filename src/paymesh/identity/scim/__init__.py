"""SCIM 2.0 (RFC 7643/7644) at `/scim2/Users` and `/scim2/Groups`: the scim2-server
package serves the protocol; `storage.py` backs it with the identity tables, roles being
the groups; `app.py` mounts it and checks admin bearer tokens."""
