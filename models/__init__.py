"""Data package holding the project's TFLite models (installed as ``edgeface.models``).

Nothing here is code the daemon runs; the package exists so ``importlib.resources`` can find the
model files in a regular (non-editable) install. Build scripts live in ``models/build/`` and are
not installed.
"""
