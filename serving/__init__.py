"""The model server: FastAPI app, router, prediction log, metrics (DESIGN §7)."""
