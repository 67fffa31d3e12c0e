"""The conformance suite's server harness (`Missive`, the test keys), loaded under its own
module name so that this directory's tests share it without a conftest of their own."""

import importlib.util
import os

_path = os.path.join(os.path.dirname(__file__), "..", "conformance", "conftest.py")
_spec = importlib.util.spec_from_file_location("conformance_harness", _path)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

API_KEY = _module.API_KEY
Missive = _module.Missive
