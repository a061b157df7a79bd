"""Per-site encoders (zones, chgnet, uma), bags, DFT site files and the content-addressed
feature cache."""

from activemil.featurize.bags import BagSet
from activemil.featurize.base import Encoder, available_encoders, get_encoder, register_encoder
from activemil.featurize.cache import FeatureCache, cache_key
from activemil.featurize.pool import featurize_pool, surface_seed
from activemil.featurize.sites import SiteSet, bundled_sites, read_site_file, read_site_files
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
    "SiteSet",
    "ZonesEncoder",
    "available_encoders",
    "bundled_sites",
    "cache_key",
    "expected_environments",
    "featurize_pool",
    "get_encoder",
    "read_site_file",
    "read_site_files",
    "register_encoder",
    "surface_seed",
]
