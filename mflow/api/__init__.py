"""`mflow serve`: the REST API and the web view (extra `api`: FastAPI, uvicorn, Jinja2).

Nothing here is imported by the CLI until `mflow serve` runs.
"""
