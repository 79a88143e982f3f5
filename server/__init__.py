"""Caption Zoo's HTTP serving: the versioned REST API (`server.api`), the micro-batcher that merges concurrent
caption requests into one `captioning.pipeline.caption_images` call (`server.batching`) and the Prometheus
metrics (`server.metrics`). `python app.py` serves these and the Gradio page from one process; the package
never imports gradio, so the API also runs on its own (`server.api.create_app`, used by tests and bench/serve.py).
"""
