"""Kinetoscope's serving runtime: engines, samplers, pipelines, scheduler, jobs and the HTTP API.

Nothing here imports torch unless the torch engine backend is chosen.
"""
