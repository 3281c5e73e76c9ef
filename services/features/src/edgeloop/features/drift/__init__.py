"""Drift: the rules file (:mod:`edgeloop.features.drift.rules`) and, later, the monitor."""

from edgeloop.features.drift.rules import (
                                           LABEL_STATISTICS,
                                           Rule,
                                           RulesError,
                                           RuleSet,
                                           Threshold,
                                           default_rules_path,
                                           format_duration,
                                           load_rules,
                                           parse_duration,
                                           parse_rules,
)

__all__ = ["LABEL_STATISTICS", "Rule", "RuleSet", "RulesError", "Threshold", "default_rules_path",
           "format_duration", "load_rules", "parse_duration", "parse_rules"]
