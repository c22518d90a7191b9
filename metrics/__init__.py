"""scalelens metrics: re-express one score table as sharp and smooth metrics and measure emergence across scale.

This package never imports torch: it analyses any table that follows `metrics.schema`.
"""
