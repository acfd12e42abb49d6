"""The HTTP API: FastAPI app factory, routes, auth and the one error mapping."""
