"""The ``ganrev`` command line: a thin typer layer over the library modules, one module per group of commands
(:mod:`.codec`: compress, decompress, info, metrics; :mod:`.train`: fetch, fit-generator, fit-baseline,
fit-density, generate; :mod:`.table`: table; :mod:`.models`: models). The entry point is :func:`main`."""

from ganrev.cli import codec, models, table, train  # noqa: F401 -- importing a command module registers its commands
from ganrev.cli.common import (
    TABLE_GRID_IMAGES,
    app,
    main,
)

__all__ = ["TABLE_GRID_IMAGES", "app", "main"]
