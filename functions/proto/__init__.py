"""The stages' gRPC contracts in Python.

``gen/`` is generated from ``proto/`` by ``hack/gen-proto.sh`` (never edit it by hand);
``codec`` translates between its messages and the stages' dataclasses, in both directions,
for the servicers and for the orchestrator's gRPC client alike.
"""
