"""The authors' release layouts, one module each: importing this package registers every converter
(``zoo.convert.converter``) by the method of its registry entries."""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
