"""Physics oracles with per-site ground truth (implement :class:`activemil.simulate.Oracle`)."""

from activemil.simulators.hea_orr import (
    BLOCKING_RULES,
    ELEMENTS,
    FCC_ZONES,
    ONTOP_ZONES,
    HEAORRSimulator,
    SiteEnergyModel,
    SurfaceResult,
)

SIMULATORS = {"hea-orr": HEAORRSimulator}


def get_simulator(name: str, **settings) -> HEAORRSimulator:
    """Instantiate the simulator ``name`` (``"hea-orr"``) with ``settings``."""
    from activemil.errors import InputError

    try:
        cls = SIMULATORS[name]
    except KeyError:
        raise InputError(
            f"Unknown simulator {name!r}; choose one of {', '.join(sorted(SIMULATORS))}."
        ) from None
    return cls(**settings)


__all__ = [
    "BLOCKING_RULES",
    "ELEMENTS",
    "FCC_ZONES",
    "ONTOP_ZONES",
    "SIMULATORS",
    "HEAORRSimulator",
    "SiteEnergyModel",
    "SurfaceResult",
    "get_simulator",
]
