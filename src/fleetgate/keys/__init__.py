"""Keys: per-region secrets (pseudonymization, region signing) and people's own signing keys."""

from fleetgate.keys.region_keys import KeyStore, keyed_digest, pseudonym, public_key_hex, verify_signature

__all__ = ["KeyStore", "keyed_digest", "pseudonym", "public_key_hex", "verify_signature"]
