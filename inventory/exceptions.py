from o2o.domain_errors import Conflict, DomainError, InvalidInput, NotFound


class InsufficientStock(Conflict):
    code = "insufficient_stock"
    default_message = "Not enough stock to serve the request."

    def __init__(self, lines: list[dict], message: str | None = None) -> None:
        super().__init__(message, details={"lines": lines})
        self.lines = lines


class UnknownSku(DomainError):
    code = "unknown_sku"
    status = 422
    default_message = "Unknown SKU."

    def __init__(self, skus: list[str]) -> None:
        super().__init__(f"Unknown or inactive SKU: {', '.join(sorted(skus))}.", details={"skus": sorted(skus)})
        self.skus = skus


class UnknownStore(NotFound):
    code = "unknown_store"
    default_message = "Unknown or inactive store."


class InvalidStockChange(DomainError):
    """An adjustment that would leave a stock row in an impossible state (e.g. less on hand than reserved)."""

    code = "invalid_stock_change"
    status = 409
    default_message = "The change would leave the stock in an impossible state."


class StaleStockQuantity(Conflict):
    code = "stale_quantity"
    default_message = "The expected previous quantity does not match the ledger."


class ReservationNotFound(NotFound):
    code = "reservation_not_found"
    default_message = "No live reservation with this reference."


class AddressNotFound(NotFound):
    code = "address_not_found"
    default_message = "The address could not be geocoded."


class CartTooLarge(InvalidInput):
    code = "cart_too_large"
