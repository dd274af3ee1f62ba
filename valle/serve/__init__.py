"""The speech API: an OpenAI-compatible HTTP server over valle.inference (valle serve, docs/serving.md).

limits.py (the server's limits, checked once), voices.py (voice files, adapters on one base), engine.py (continuous
batching in one thread), service.py (requests -> pieces -> audio), formats.py (wav/flac/mp3/opus/pcm), metrics.py
(Prometheus text), app.py (HTTP), server.py (loading and running it: the only module that needs uvicorn).
"""
