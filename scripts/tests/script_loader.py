"""Load one of scripts/' extension-less Python commands as a module, for its tests."""

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPTS_DIR = Path(__file__).resolve().parent.parent


def load_script(filename: str) -> ModuleType:
    """scripts/<filename> as a module named after it (dashes become underscores)."""
    name = filename.replace("-", "_")
    loader = importlib.machinery.SourceFileLoader(name, str(SCRIPTS_DIR / filename))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    loader.exec_module(module)
    return module
