"""Presentation of library records: attribution and rationale HTML, heatmaps, statistics tables, training curves
(plotly, imported lazily)."""
