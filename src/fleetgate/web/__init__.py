"""`fleetgate serve`: the JSON API under /api/v1 and the server-rendered dashboard, over the service layer.

Nothing here decides anything: each route authenticates the caller, checks their role (before the
body is read), records a state-changing request in the region's transparency log, calls one
service method and renders its result as JSON or HTML.
"""

from fleetgate.web.app import create_app

__all__ = ["create_app"]
