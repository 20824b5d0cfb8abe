"""Per-region secrets: the pseudonymization key and the region's signing key. They never leave."""

from fleetgate.keys.region_keys import KeyStore, pseudonym, public_key_hex, verify_signature

__all__ = ["KeyStore", "pseudonym", "public_key_hex", "verify_signature"]
