"""Per-site encoders (zones, chgnet, uma), bags and the content-addressed feature cache."""

from activemil.featurize.bags import BagSet
from activemil.featurize.base import Encoder, available_encoders, get_encoder, register_encoder
from activemil.featurize.cache import FeatureCache, cache_key
from activemil.featurize.pool import featurize_pool, surface_seed
from activemil.featurize.zones import ZonesEncoder, expected_environments


def _chgnet(**settings) -> Encoder:
    from activemil.featurize.chgnet import CHGNetEncoder

    return CHGNetEncoder(**settings)


def _uma(**settings) -> Encoder:
    from activemil.featurize.uma import UMAEncoder

    return UMAEncoder(**settings)


register_encoder("chgnet", _chgnet)
register_encoder("uma", _uma)

__all__ = [
    "BagSet",
    "Encoder",
    "FeatureCache",
    "ZonesEncoder",
    "available_encoders",
    "cache_key",
    "expected_environments",
    "featurize_pool",
    "get_encoder",
    "register_encoder",
    "surface_seed",
]
