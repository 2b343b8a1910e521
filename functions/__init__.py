"""The connector's three stages: pure logic from observed state to desired state.

Nothing under ``functions/`` performs I/O against a Kubernetes API (the rule is checked by
``tests/unit/test_layering.py``). Each stage is callable as a plain Python function, served
as its own gRPC service, and served as a Crossplane composition function.
"""
