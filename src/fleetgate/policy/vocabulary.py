"""The words a decision request and a rule pack may use.

Kinds and features are the public vocabulary of the decision request. Tags are what
classification rules attach to an item; the engine gives a few of them a fixed meaning (below).
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """Where an item may go, from least to most restrictive."""

    EXPORT_FREE = "EXPORT_FREE"
    EXPORT_FTZ_LIST = "EXPORT_FTZ_LIST"
    STANDARD_CONTRACT_OR_CERT = "STANDARD_CONTRACT_OR_CERT"
    SECURITY_ASSESSMENT = "SECURITY_ASSESSMENT"
    LOCAL_ONLY = "LOCAL_ONLY"

    @property
    def severity(self) -> int:
        return SEVERITY[self]

    @property
    def needs_approval(self) -> bool:
        """Whether the gate holds items with this outcome until a filing is approved."""
        return self in (Outcome.STANDARD_CONTRACT_OR_CERT, Outcome.SECURITY_ASSESSMENT)


SEVERITY = {outcome: rank for rank, outcome in enumerate(Outcome)}


def most_severe(outcomes: list[Outcome]) -> Outcome:
    """The combined outcome of several items: the most restrictive one wins."""
    return max(outcomes, key=SEVERITY.__getitem__)


KINDS: frozenset[str] = frozenset({
    "exterior_video", "exterior_image", "lidar_pointcloud", "hd_map", "gnss_trajectory",
    "can_telemetry", "fault_codes", "cabin_video", "cabin_audio", "biometric", "owner_record",
    "after_sales", "used_car", "charging_session", "charging_network_ops", "vehicle_flow_stats",
    "production", "procurement", "inventory", "quality", "logistics", "rd_design", "rd_test",
    "ota_package", "vuln_report", "security_incident", "model_update", "aggregate_stats",
})

FEATURES: frozenset[str] = frozenset({
    "faces", "plates", "road_signs", "geo_precise", "sensitive_area", "vin", "owner_contact",
    "national_id", "voice", "biometric",
})

EXEMPTIONS: frozenset[str] = frozenset({
    "contract_necessity", "hr", "emergency", "collected_abroad", "vuln_reported",
    "security_incident", "ota_source",
})

ZONES: frozenset[str] = frozenset({"lingang", "shanghai-ftz", "beijing-ftz"})
MODES: frozenset[str] = frozenset({"transfer", "remote_access"})

# Tags with a meaning the engine relies on. Packs may add their own (informational) tags.
TAG_PI = "pi"                  # personal information: subjects count toward the PI total
TAG_SPI = "spi"                # sensitive PI: subjects count toward the SPI total instead
TAG_NO_PI = "no_pi"            # positively classified as holding no PI
TAG_IMPORTANT = "important"    # important data
TAG_GEO_SURVEY = "geo_survey"  # surveying / geographic data
TAG_EXEMPT = "exempt"          # taken out of the volume counts by a category exemption
TAG_FTZ_LISTED = "ftz_listed"  # on a free-trade-zone general data list; also out of the counts

# An item with none of these has not been classified by any rule: it stays local.
CLASSIFYING_TAGS = frozenset({TAG_PI, TAG_SPI, TAG_NO_PI, TAG_IMPORTANT, TAG_GEO_SURVEY})
UNCOUNTED_TAGS = frozenset({TAG_EXEMPT, TAG_FTZ_LISTED})

STAGES = ("classify", "decide")

# Variables a rule's `when` may read, per stage. `totals` exists only once every item of the
# request has been classified and counted.
STAGE_VARIABLES: dict[str, frozenset[str]] = {
    "classify": frozenset({"item", "tags", "exporter", "destination", "mode", "as_of"}),
    "decide": frozenset({"item", "tags", "exporter", "destination", "mode", "as_of", "totals"}),
}

# The fields of the structured variables, for the lint's field check.
VARIABLE_FIELDS: dict[str, frozenset[str]] = {
    "item": frozenset({"kind", "features", "anonymized", "pseudonymized", "exemption", "subjects",
                       "aggregated_samples", "dp_noise_multiplier"}),
    "exporter": frozenset({"ciio", "zone", "surveying_approval"}),
    "totals": frozenset({"pi", "spi"}),
}
