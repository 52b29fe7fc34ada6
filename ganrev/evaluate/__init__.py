"""Rate-distortion evaluation: the comparison table and the curves, in the spirit of CompressAI's bench.

- :mod:`ganrev.evaluate.records`: measure codecs on images (one record per codec and image: bytes, bpp,
  metrics, times) and summarise them; match a codec's quality to a rate;
- :mod:`ganrev.evaluate.table`: ``ganrev table``'s rows (:func:`run_table`) and their JSON, CSV, Markdown, grid;
- :mod:`ganrev.evaluate.curves`: the rate-SSIM curves (:func:`run_curves`), their JSON (also in CompressAI's
  results layout) and plot;
- :mod:`ganrev.evaluate.runs`: what those share: :class:`EvalOptions`, inputs, run metadata, strict JSON.

The names below are those modules' public API, importable from here.
"""

from ganrev.evaluate.records import (
    RECORD_FIELDS,
    TABLE_COLUMNS,
    GridImages,
    RateMatch,
    evaluate,
    markdown_table,
    match_rate,
    mean_bpp_by_quality,
    summarise,
)
from ganrev.evaluate.runs import (
    CURVE_BITS,
    CURVE_JPEG_QUALITIES,
    CURVE_REFERENCE_BPP,
    CURVE_WEBP_QUALITIES,
    EvalOptions,
    display_path,
    generator_label,
    load_image_folder,
    run_metadata,
    search_latents,
)
from ganrev.evaluate.table import (
    GRID_CAPTION_HEIGHT,
    GRID_GAP,
    GRID_LABEL_WIDTH,
    GRID_MIN_TILE,
    TableResult,
    run_table,
    write_table_csv,
    write_table_grid,
    write_table_json,
    write_table_markdown,
)
from ganrev.evaluate.curves import (
    BEST_CLASSICAL_SERIES,
    CurvesResult,
    compressai_results,
    plot_curves,
    run_curves,
    write_compressai_results,
    write_curves_json,
)

__all__ = [
    "BEST_CLASSICAL_SERIES",
    "CURVE_BITS",
    "CURVE_JPEG_QUALITIES",
    "CURVE_REFERENCE_BPP",
    "CURVE_WEBP_QUALITIES",
    "CurvesResult",
    "GRID_CAPTION_HEIGHT",
    "GRID_GAP",
    "GRID_LABEL_WIDTH",
    "GRID_MIN_TILE",
    "GridImages",
    "RECORD_FIELDS",
    "TABLE_COLUMNS",
    "RateMatch",
    "TableResult",
    "EvalOptions",
    "display_path",
    "evaluate",
    "generator_label",
    "load_image_folder",
    "markdown_table",
    "match_rate",
    "mean_bpp_by_quality",
    "plot_curves",
    "run_curves",
    "run_metadata",
    "run_table",
    "search_latents",
    "summarise",
    "write_curves_json",
    "compressai_results",
    "write_compressai_results",
    "write_table_csv",
    "write_table_json",
    "write_table_grid",
    "write_table_markdown",
]
