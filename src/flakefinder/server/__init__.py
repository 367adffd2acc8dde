"""HTTP inference server (FastAPI) and its Python client, so microscopes without a GPU share one."""
