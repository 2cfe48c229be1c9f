"""The names of the table formats and figure kinds, defined once for the renderers and the CLI.

A module of its own, with no imports, so that `crlbench --help` can list them without loading
pandas or matplotlib.
"""

TABLE_FORMATS = ("terminal", "markdown", "csv", "latex")
FIGURE_KINDS = ("imbalance", "kest", "tsne", "precision", "curves", "cd")
