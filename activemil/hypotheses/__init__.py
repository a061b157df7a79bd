"""Attention-guided synthesis hypotheses: top sites, enrichment, moves, occlusion, pictures."""

from activemil.hypotheses.core import (
    Hypothesis,
    Move,
    SiteRecord,
    attention_recall,
    attention_sharpness,
    build_hypotheses,
    element_enrichment,
    healthy_sharpness_band,
    neighbour_moves,
    occlude,
    occlusion_check,
    site_environments,
)
from activemil.hypotheses.export import export, plot_enrichment, plot_surface_attention, to_frame

__all__ = [
    "Hypothesis",
    "Move",
    "SiteRecord",
    "attention_recall",
    "attention_sharpness",
    "build_hypotheses",
    "element_enrichment",
    "export",
    "healthy_sharpness_band",
    "neighbour_moves",
    "occlude",
    "occlusion_check",
    "plot_enrichment",
    "plot_surface_attention",
    "site_environments",
    "to_frame",
]
