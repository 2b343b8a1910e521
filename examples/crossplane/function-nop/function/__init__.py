"""An example composition function: composes a ConfigMap and marks it ready."""
