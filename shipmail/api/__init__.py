"""The REST API: one module per resource (parse, check scope, call a service, render).

Each module declares its operations with :func:`shipmail.api.routing.operation`; the app turns
them into routes (:func:`shipmail.api.routing.build_routes`) and the OpenAPI document
(:mod:`shipmail.openapi`) is generated from the same declarations.
"""
