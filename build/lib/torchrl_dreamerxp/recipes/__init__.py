"""The runnable recipes (``python recipes/<name>.py`` in a checkout, ``python -m torchrl_dreamerxp.recipes.<name>`` installed)."""
