"""Admin forms. They collect and check input, then hand it to inventory.services; they never write stock rows."""

import uuid

from django import forms

from inventory import services
from inventory.models import MovementReason, Stock, StockMovement

#: Reasons an operator may record by hand. The rest (reserve, commit, sale, return, transfer...) come from flows.
MANUAL_REASONS = [
    MovementReason.GOODS_RECEIPT,
    MovementReason.ADJUSTMENT,
    MovementReason.COUNT,
    MovementReason.DAMAGE,
    MovementReason.RELEASE_FROM_QUARANTINE,
    MovementReason.WRITE_OFF,
    MovementReason.SAFETY_CHANGE,
]

DELTA_FIELDS = ("delta_on_hand", "delta_unavailable")
LEVEL_FIELDS = ("counted_on_hand", "new_safety", "new_target")


class StockAdjustmentForm(forms.Form):
    """A manual change of one stock row: either deltas (a receipt, a damage, a write-off) or new absolute levels
    (a count, a new safety stock or target). One submission writes at most one movement."""

    reason = forms.ChoiceField(choices=[(r.value, r.label) for r in MANUAL_REASONS])
    delta_on_hand = forms.IntegerField(
        required=False,
        label="Change on hand by",
        help_text="Positive for units received or found, negative for units lost or written off.",
    )
    delta_unavailable = forms.IntegerField(
        required=False,
        label="Change unavailable by",
        help_text="Positive to quarantine damaged units, negative to put them back on sale (or with a write-off).",
    )
    counted_on_hand = forms.IntegerField(
        required=False, min_value=0, label="Counted on hand", help_text="The quantity found by a stock count."
    )
    new_safety = forms.IntegerField(required=False, min_value=0, label="New safety stock")
    new_target = forms.IntegerField(required=False, min_value=0, label="New target level")
    reference = forms.CharField(
        required=False, max_length=120, help_text="Receipt, count sheet or ticket number, if there is one."
    )
    note = forms.CharField(required=False, max_length=300, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}))
    # The on-hand quantity the operator saw: a count is refused (StaleStockQuantity) if the ledger moved since.
    expected_on_hand = forms.IntegerField(widget=forms.HiddenInput, min_value=0)
    # One token per rendered form: a double submission of the same delta replays instead of applying twice.
    token = forms.RegexField(regex=r"^[0-9a-f]{32}$", widget=forms.HiddenInput)

    def __init__(self, *args, stock: Stock, **kwargs) -> None:
        kwargs.setdefault("initial", {})
        kwargs["initial"] = {"expected_on_hand": stock.on_hand, "token": uuid.uuid4().hex, **kwargs["initial"]}
        super().__init__(*args, **kwargs)
        self.stock = stock

    def clean(self) -> dict:
        data = super().clean()
        reason = data.get("reason")
        has_delta = any(data.get(name) for name in DELTA_FIELDS)
        has_level = any(data.get(name) is not None for name in LEVEL_FIELDS)
        if not has_delta and not has_level:
            raise forms.ValidationError("Enter a change (on hand or unavailable) or a new level.", code="empty")
        if has_delta and has_level:
            raise forms.ValidationError(
                "Either change quantities by a delta or set new levels, not both in one adjustment.", code="mixed"
            )
        if reason == MovementReason.COUNT and data.get("counted_on_hand") is None:
            self.add_error("counted_on_hand", "A stock count records the counted quantity.")
        if reason == MovementReason.SAFETY_CHANGE and (has_delta or data.get("counted_on_hand") is not None):
            self.add_error("reason", "A safety stock change only sets a new safety stock or target.")
        return data

    @property
    def mode(self) -> str:
        return "levels" if any(self.cleaned_data.get(name) is not None for name in LEVEL_FIELDS) else "delta"

    def apply(self, *, actor: str) -> StockMovement | None:
        """Call the stock service. Domain errors (InvalidStockChange, StaleStockQuantity...) propagate to the caller.
        Returns the movement written, or None when only the target changed (the target is not in the ledger)."""
        data = self.cleaned_data
        common = {
            "store": self.stock.store,
            "product": self.stock.product,
            "reason": data["reason"],
            "actor": actor,
            "reference": data["reference"],
            "note": data["note"],
        }
        if self.mode == "levels":
            counted = data.get("counted_on_hand")
            return services.set_stock_levels(
                **common,
                on_hand=counted,
                safety=data.get("new_safety"),
                target=data.get("new_target"),
                expected_on_hand=data["expected_on_hand"] if counted is not None else None,
            )
        return services.adjust_stock(
            **common,
            on_hand=data.get("delta_on_hand") or 0,
            unavailable=data.get("delta_unavailable") or 0,
            idempotency_key=f"admin-adjust:{data['token']}",
        )
