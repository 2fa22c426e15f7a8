"""Risk errors, named after the condition."""

from __future__ import annotations

from paymesh.kernel.errors import PaymeshError


class RiskError(PaymeshError):
    """Root of the risk service's errors."""


class DecisionNotFound(RiskError):
    code = "decision_not_found"
    status = 404
    title = "No such decision"


class RuleSetNotFound(RiskError):
    code = "ruleset_not_found"
    status = 404
    title = "No rule set has this version"


class InvalidRuleSet(RiskError):
    code = "invalid_ruleset"
    status = 422
    title = "A rule does not compile, or does not answer true or false on the known facts"


class NothingToRollBack(RiskError):
    code = "nothing_to_roll_back"
    status = 409
    title = "No earlier activation to return to"


class RuleSetAlreadyActive(RiskError):
    code = "ruleset_already_active"
    status = 409
    title = "This version is the active rule set"


class CaseNotFound(RiskError):
    code = "case_not_found"
    status = 404
    title = "No such case"


class CaseAlreadyResolved(RiskError):
    code = "case_already_resolved"
    status = 409
    title = "The case was approved or declined already"


class CustomerNotFound(RiskError):
    code = "customer_not_found"
    status = 422
    title = "Profiles knows no such customer: nothing to judge the payment by"


class CurrencyNotConvertible(RiskError):
    code = "currency_not_convertible"
    status = 422
    title = "Forex has no rate to value this currency in USD"


class FactsUnavailable(RiskError):
    code = "facts_unavailable"
    status = 503
    title = "A service risk gathers facts from did not answer; no decision was made"


class NoSanctionsList(RiskError):
    code = "no_sanctions_list"
    status = 503
    title = "No sanctions list is loaded: screening cannot answer"


class InvalidCursor(RiskError):
    code = "invalid_cursor"
    status = 400
    title = "The cursor is not one this service issued"


class RuleSetConflict(RiskError):
    code = "ruleset_conflict"
    status = 409
    title = "Another rule set took this version number at the same time; send it again"
