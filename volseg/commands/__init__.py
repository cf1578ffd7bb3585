"""CLI sub-commands: one light module each (``HELP``, ``add_arguments``, ``run``)."""
