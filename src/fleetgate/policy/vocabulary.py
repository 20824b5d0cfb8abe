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
    "ota_package", "vuln_report", "security_incident", "model_update", "aggregate_stats", "employee_record",
})

FEATURES: frozenset[str] = frozenset({
    "faces", "plates", "road_signs", "geo_precise", "sensitive_area", "vin", "owner_contact",
    "national_id", "id_document_image", "voice", "biometric",
})

EXEMPTIONS: frozenset[str] = frozenset({
    "contract_necessity", "hr", "emergency", "collected_abroad", "vuln_reported",
    "security_incident", "ota_source",
})

# What an export under an exemption is for; the exemption rules check it (Cross-Border Provisions
# 2024 Art 5(2); the 2026 automotive guideline's vulnerability, incident and OTA exemptions).
EXEMPTION_PURPOSES: frozenset[str] = frozenset({
    "hr_management", "vulnerability_fix", "incident_handling", "defect_remedy",
})

# The legal basis a PI item is exported on: PIPL Art 13(1)-(6). Consent for an export is separate
# consent (PIPL Art 39), so the consent basis is named for it.
LEGAL_BASES: frozenset[str] = frozenset({
    "separate_consent", "contract_necessity", "hr_management", "statutory_duty", "emergency",
    "news_public_interest", "disclosed_info",
})

# Request fields that clear a blocking obligation once recorded (`requires` of a blocking effect).
BLOCKING_REQUIRES: frozenset[str] = frozenset({"legal_basis", "pipia_ref"})

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
    "classify": frozenset({"item", "tags", "exporter", "destination", "mode", "as_of", "switches"}),
    "decide": frozenset({"item", "tags", "exporter", "destination", "mode", "as_of", "switches", "totals"}),
}

# The fields of the structured variables, for the lint's field check.
VARIABLE_FIELDS: dict[str, frozenset[str]] = {
    "item": frozenset({"kind", "features", "anonymized", "pseudonymized", "exemption", "subjects",
                       "aggregated_samples", "dp_noise_multiplier", "exemption_basis", "legal_basis",
                       "pipia_ref", "geo_confidentiality_processed"}),
    "exporter": frozenset({"ciio", "zone", "surveying_approval", "lingang_list_renewal",
                           "processed_pi_subjects", "processed_pi_known"}),
    "totals": frozenset({"pi", "spi", "pi_since_prev_year", "spi_since_prev_year", "prev_year_known"}),
}

# Fields of the maps inside those variables ("" when the request gives none).
NESTED_FIELDS: dict[str, frozenset[str]] = {
    "item.exemption_basis": frozenset({"purpose", "ref", "filed_on"}),
    "item.legal_basis": frozenset({"type", "ref"}),
    "exporter.lingang_list_renewal": frozenset({"ref", "until"}),
}
