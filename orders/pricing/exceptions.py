"""Domain errors of pricing: each code is stable (the website and the tills branch on it)."""

from o2o.domain_errors import Conflict, DomainError


class CodeError(DomainError):
    status = 422


class UnknownCode(CodeError):
    code = "code_unknown"
    default_message = "No such coupon or voucher code."


class CodeExpired(CodeError):
    code = "code_expired"
    default_message = "This code has expired."


class CodeUsedUp(CodeError):
    code = "code_used_up"
    default_message = "This code has already been used."


class CodeNotYours(CodeError):
    code = "code_not_yours"
    default_message = "This code belongs to another member."


class CodeOutOfScope(CodeError):
    code = "code_out_of_scope"
    default_message = "This code cannot be used here or now (channel, store, member tier, dates or hours)."


class InvalidPromotion(DomainError):
    code = "invalid_promotion"
    status = 422
    default_message = "The promotion is not valid."


class PriceChanged(Conflict):
    code = "price_changed"
    default_message = "The prices changed since the promise; here is the new breakdown."


class BudgetExhausted(Conflict):
    code = "promotion_budget_exhausted"
    default_message = "A promotion ran out of budget while the order was being placed."
