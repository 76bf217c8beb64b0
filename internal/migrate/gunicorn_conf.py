"""Reads a gunicorn config file the way gunicorn does, and prints its settings as JSON.

Run by `warmpool import` with the app's interpreter: python3 -c "<this file>" FILE. Stdlib only
(gunicorn need not be installed). Like gunicorn, it executes the file as a module and keeps its
module-level names; functions are server hooks, reported by name. Values that JSON cannot hold
are reported by repr().
"""
import importlib.machinery
import importlib.util
import json
import os
import sys
import types


def main():
    path = os.path.abspath(sys.argv[1])
    # gunicorn imports the file as a module named after it; its directory is not on sys.path
    # unless the file puts it there, but the working directory is (gunicorn is run from it).
    sys.path.insert(0, os.getcwd())
    name = "__warmpool_import_config__"
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    loader.exec_module(mod)
    settings, hooks = {}, []
    for key, value in vars(mod).items():
        if key.startswith("_") or isinstance(value, types.ModuleType) or isinstance(value, type):
            continue
        if callable(value):
            hooks.append(key)
            continue
        try:
            json.dumps(value)
            settings[key] = value
        except (TypeError, ValueError):
            settings[key] = repr(value)
    json.dump({"settings": settings, "hooks": sorted(hooks)}, sys.stdout)


if __name__ == "__main__":
    main()
