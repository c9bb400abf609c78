"""The HTTP API (FastAPI): `create_app(settings)` builds it, `serve(settings)` runs it.

app.py wires it together; routes/ holds one router per resource; schemas.py the bodies;
intake.py reads a create request (body, input video); validation.py checks it against the
model's manifest and the settings (pure); errors.py the one error shape; middleware.py request
ids, logs, metrics and the body limit.
"""
