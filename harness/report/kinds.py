"""The names of the table formats and figure kinds, defined once for the renderers and the CLI.

A module of its own, with no imports, so that `crlbench --help` can list them without loading
pandas or matplotlib.
"""

TABLE_FORMATS = ("terminal", "markdown", "csv", "latex")
# what a cell shows beside its mean: the sample std, or a 95% interval of the mean over seeds
TABLE_INTERVALS = ("std", "t", "bootstrap")
FIGURE_KINDS = ("imbalance", "kest", "tsne", "precision", "curves", "cd")
