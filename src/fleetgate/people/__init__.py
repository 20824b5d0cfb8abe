"""The people of a region: principals with roles and public keys, registered by signed, logged statements."""

from fleetgate.people.registry import (
    PrincipalError,
    add_principal,
    bootstrap_admin,
    current_state,
    list_principals,
    remove_principal,
    require,
)

__all__ = ["PrincipalError", "add_principal", "bootstrap_admin", "current_state", "list_principals",
           "remove_principal", "require"]
