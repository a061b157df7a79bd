"""Campaign directories: configuration, the append-only event log, lifecycle, ingest, propose.

The log (``events.jsonl``) is the single source of truth; everything else is derived from it.
See docs/campaigns.md for the layout, event schema and durability guarantees.
"""

from activemil.campaigns.campaign import (
    Campaign,
    CampaignState,
    CandidateState,
    Measurement,
    fold,
)
from activemil.campaigns.config import SCHEMA_VERSION, CampaignConfig, load_config, migrate
from activemil.campaigns.events import KINDS, VIAS, Event
from activemil.campaigns.ingestion import IngestError, IngestPlan, ingest, plan_ingest, read_table
from activemil.campaigns.proposal import POLICIES, ProposalResult, maximin_batch, propose
from activemil.campaigns.units import canonical_unit, conversion_factor, convert, unit_family

__all__ = [
    "KINDS",
    "POLICIES",
    "SCHEMA_VERSION",
    "VIAS",
    "Campaign",
    "CampaignConfig",
    "CampaignState",
    "CandidateState",
    "Event",
    "IngestError",
    "IngestPlan",
    "Measurement",
    "ProposalResult",
    "canonical_unit",
    "conversion_factor",
    "convert",
    "fold",
    "ingest",
    "load_config",
    "maximin_batch",
    "migrate",
    "plan_ingest",
    "propose",
    "read_table",
    "unit_family",
]
