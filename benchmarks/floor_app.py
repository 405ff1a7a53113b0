"""The floor of an admission webhook: a bare Flask app that parses the review and answers allowed.

What any Python webhook under gunicorn pays whatever it decides: the request through gunicorn and
Flask, the body read and parsed once as JSON, and a small JSON answer. ``benchmarks/admission_floor.py``
runs it with Serin's gunicorn settings beside Serin itself.
"""

from __future__ import annotations

import json

from flask import Flask, Response, jsonify, request

app = Flask("floor")


@app.post("/mutate")
@app.post("/validate")
def review() -> Response:
    uid = json.loads(request.get_data())["request"]["uid"]
    return jsonify(apiVersion="admission.k8s.io/v1", kind="AdmissionReview", response={"uid": uid, "allowed": True})
