"""Published figures, and the tables that set aelab's beside them (`experiment=reference/*`)."""

from aelab.reference.pca import pca_sse_per_image
from aelab.reference.published import FIGURES, PAPERS, Published
from aelab.reference.table import compare, markdown, sweep_table, write_table

__all__ = [
    "FIGURES",
    "PAPERS",
    "Published",
    "compare",
    "markdown",
    "pca_sse_per_image",
    "sweep_table",
    "write_table",
]
