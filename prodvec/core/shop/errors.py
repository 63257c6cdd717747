"""The one error a shop that breaks the data contract raises."""

from __future__ import annotations


class ContractError(ValueError):
    """A shop file breaks a rule of the contract (see ../shared/contract.md).

    The message names the file, the column, the rule and one bad row, so that
    whoever exported the data can find and fix it without reading our code:

        products.parquet, column 'price': must be > 0 — 3 bad rows,
        e.g. row 17: {'product_id': 'P017', 'price': -3.0}

    `row` is the 0-based position of the example in the file, `count` the
    number of rows breaking the rule; both are None for file- or column-level
    problems (a missing file, a missing column).
    """

    def __init__(
        self,
        file: str,
        column: str | None,
        rule: str,
        *,
        example: dict | None = None,
        row: int | None = None,
        count: int | None = None,
    ):
        self.file = file
        self.column = column
        self.rule = rule
        self.example = example
        self.row = row
        self.count = count
        super().__init__(self._message())

    def _message(self) -> str:
        where = self.file if self.column is None else f"{self.file}, column {self.column!r}"
        text = f"{where}: {self.rule}"
        if self.count is not None:
            text += f" — {self.count} bad row{'' if self.count == 1 else 's'}"
        if self.example is not None:
            text += f", e.g. row {self.row}: {self.example}"
        return text

    def __reduce__(self):
        # Keyword-only fields would be lost by ValueError's default pickling
        # (errors travel between worker processes).
        return _rebuild, (self.file, self.column, self.rule, self.example, self.row, self.count)


def _rebuild(file, column, rule, example, row, count) -> ContractError:
    return ContractError(file, column, rule, example=example, row=row, count=count)
