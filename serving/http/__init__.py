"""The server process: `python -m serving.http.serve` (uvicorn on serving.http.app:create_app)."""
