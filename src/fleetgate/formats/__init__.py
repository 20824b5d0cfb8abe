"""Fleet drop format v1: layout, file kinds, table schemas and identifier checksums."""

from fleetgate.formats.drop_layout import (
    DROP_FORMAT_VERSION,
    TABLE_SCHEMAS,
    FileRole,
    classify_drop_path,
    clip_json_schema,
)
from fleetgate.formats.identifiers import (
    is_valid_resident_id,
    is_valid_vin,
    resident_id_check_char,
    vin_check_digit,
)

__all__ = [
    "DROP_FORMAT_VERSION",
    "TABLE_SCHEMAS",
    "FileRole",
    "classify_drop_path",
    "clip_json_schema",
    "is_valid_resident_id",
    "is_valid_vin",
    "resident_id_check_char",
    "vin_check_digit",
]
