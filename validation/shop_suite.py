"""The shop's own tables validated by Great Expectations: the contract rules that are expectations.

The contract loader (`prodvec.core.shop.loader`) stays the authority: it
normalises types and stops at the first broken rule with a file/column/row
message. This suite states the same rules as GX expectations over
products / events / orders, so both ends of the pipeline (the shop going in,
the embeddings coming out) report in one language and in one Data Docs site.
Every failed expectation is also written as the loader would write it
(`ContractError`'s message: file, column, rule, how many rows, one example).

Rules that need more than an expectation (image files existing on disk,
type coercion) stay in the loader only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.core.shop.errors import ContractError

KNOWN_PRODUCT = "product_in_catalogue"  # added to events/orders: whether product_id is in products.parquet


@dataclass(frozen=True)
class ShopCheck:
    file: str
    column: str | None
    rule: str
    success: bool
    count: int | None = None
    message: str = ""


def _rules(file: str, columns: list[str]) -> list[tuple[str, str, object]]:
    """(column, rule in the contract's words, expectation) for the columns this file has."""
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    e = gx.expectations
    out = []

    def not_null(col: str):
        out.append((col, "must not be null", e.ExpectColumnValuesToNotBeNull(column=col)))

    if file == C.PRODUCTS_FILE:
        not_null(C.PRODUCT_ID)
        out.append((C.PRODUCT_ID, "must be unique", e.ExpectColumnValuesToBeUnique(column=C.PRODUCT_ID)))
        not_null(C.CREATED_AT)
        if C.TITLE in columns:
            not_null(C.TITLE)
        if C.PRICE in columns:
            out.append((C.PRICE, "must be > 0 and finite",
                        e.ExpectColumnValuesToBeBetween(column=C.PRICE, min_value=0, strict_min=True,
                                                        max_value=np.finfo(np.float64).max)))
    elif file == C.EVENTS_FILE:
        for col in (C.SESSION_ID, C.USER_ID, C.PRODUCT_ID, C.EVENT_TYPE, C.TS):
            not_null(col)
        out.append((C.EVENT_TYPE, f"must be one of {', '.join(C.EVENT_TYPES)}",
                    e.ExpectColumnValuesToBeInSet(column=C.EVENT_TYPE, value_set=list(C.EVENT_TYPES))))
        out.append((C.PRODUCT_ID, "must name a product in products.parquet",
                    e.ExpectColumnValuesToBeInSet(column=KNOWN_PRODUCT, value_set=[True])))
    elif file == C.ORDERS_FILE:
        for col in (C.ORDER_ID, C.USER_ID, C.PRODUCT_ID, C.ORDERED_AT, C.PRICE, C.RETURNED):
            not_null(col)
        out.append((C.PRICE, "must be > 0 and finite",
                    e.ExpectColumnValuesToBeBetween(column=C.PRICE, min_value=0, strict_min=True,
                                                    max_value=np.finfo(np.float64).max)))
        out.append((C.PRODUCT_ID, "must name a product in products.parquet",
                    e.ExpectColumnValuesToBeInSet(column=KNOWN_PRODUCT, value_set=[True])))
        out.append((C.RETURNED_AT, "must be null unless returned is True",
                    e.ExpectColumnValuesToBeNull(column=C.RETURNED_AT, row_condition=Column(C.RETURNED) == False)))  # noqa: E712
        out.append((C.RETURNED_AT, "is required when returned is True",
                    e.ExpectColumnValuesToNotBeNull(column=C.RETURNED_AT,
                                                    row_condition=Column(C.RETURNED) == True)))  # noqa: E712
        out.append((C.RETURNED_AT, f"must not be before {C.ORDERED_AT}",
                    e.ExpectColumnPairValuesAToBeGreaterThanB(column_A=C.RETURNED_AT, column_B=C.ORDERED_AT,
                                                             or_equal=True,
                                                             ignore_row_if="either_value_is_missing")))
    present = set(columns) | {KNOWN_PRODUCT}
    kept = [(col, rule, exp) for col, rule, exp in out if col in present and getattr(exp, "column", col) in present]
    for i, (_, _, exp) in enumerate(kept):
        exp.meta = {"rule": i}  # results come back in GX's order, not the suite's
    return kept


def read_tables(shop_dir: Path) -> dict[str, pd.DataFrame]:
    """The shop's parquet files as they are on disk (no normalisation), for a shop the loader refused."""
    tables = {}
    for file in (C.PRODUCTS_FILE, C.EVENTS_FILE, C.ORDERS_FILE):
        path = Path(shop_dir) / file
        if path.exists():
            try:
                tables[file] = pd.read_parquet(path)
            except Exception:  # unreadable: the loader's error says why
                continue
    return tables


def validate_shop_tables(tables: dict[str, pd.DataFrame], docs_root: Path | None = None,
                         run_name: str = "shop") -> tuple[list[ShopCheck], str | None]:
    """Run the shop suite on `tables` (file name -> DataFrame); the checks and the Data Docs page of products."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    from prodvec.validation import suite as embedding_suite

    products = tables.get(C.PRODUCTS_FILE)
    known = pd.Index(products[C.PRODUCT_ID].astype(str)) if products is not None and C.PRODUCT_ID in products \
        else pd.Index([])
    checks: list[ShopCheck] = []
    pages = []
    with embedding_suite._lock, embedding_suite.root_lock(docs_root):
        context = embedding_suite._context(docs_root)
        for file, table in tables.items():
            table = table.reset_index(drop=True)
            if file != C.PRODUCTS_FILE and C.PRODUCT_ID in table:
                table = table.assign(**{KNOWN_PRODUCT: table[C.PRODUCT_ID].astype(str).isin(known).to_numpy()})
            rules = _rules(file, list(table.columns))
            name = "shop_" + file.split(".")[0]
            asset = name.removeprefix("shop_")
            batch = embedding_suite.whole_dataframe(context, "prodvec_shop", asset)
            suite = context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=[r[2] for r in rules]))
            definition = context.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=name, data=batch, suite=suite))
            result = definition.run(batch_parameters={"dataframe": table},
                                    result_format={"result_format": "SUMMARY"},
                                    run_id=RunIdentifier(run_name=run_name))
            outcomes = {r.expectation_config.meta["rule"]: r for r in result.results}
            for i, (column, rule, _) in enumerate(rules):
                checks.append(_shop_check(file, column, rule, outcomes[i], table))
            if docs_root:
                pages.append(embedding_suite.build_docs_page(docs_root, name, result, f"prodvec_shop-{asset}"))
    if docs_root:
        embedding_suite.refresh_index(docs_root)
    return checks, (pages[0] if pages else None)


def _shop_check(file: str, column: str, rule: str, outcome, table: pd.DataFrame) -> ShopCheck:
    if outcome.success:
        return ShopCheck(file, column, rule, True, 0)
    out = outcome.result or {}
    if outcome.exception_info and outcome.exception_info.get("raised_exception"):
        text = f"{file}, column {column!r}: {rule} — could not be checked ({outcome.exception_info.get('exception_message')})"
        return ShopCheck(file, column, rule, False, None, text)
    count = int(out.get("unexpected_count") or 0)
    rows = list(out.get("partial_unexpected_index_list") or [])
    row = int(rows[0]) if rows and isinstance(rows[0], (int, np.integer)) else None
    example = None
    if row is not None:
        keys = [k for k in (C.PRODUCT_ID, C.SESSION_ID, C.ORDER_ID) if k in table] + \
            [c for c in (column, C.RETURNED, C.ORDERED_AT) if c in table]
        example = {k: table.at[row, k] for k in dict.fromkeys(keys)}
        example = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in example.items()}
    message = str(ContractError(file, column, rule, example=example, row=row, count=count or None))
    return ShopCheck(file, column, rule, False, count, message)


def validate_shop(shop, docs_root: Path | None = None) -> tuple[list[ShopCheck], str | None]:
    """The shop suite on a loaded `Shop`'s tables (what the pipeline calls after the contract loader)."""
    tables = {C.PRODUCTS_FILE: shop.products}
    if shop.events is not None:
        tables[C.EVENTS_FILE] = shop.events
    if shop.orders is not None:
        tables[C.ORDERS_FILE] = shop.orders
    return validate_shop_tables(tables, docs_root, run_name=Path(shop.root).name or "shop")


def summary(checks: list[ShopCheck]) -> str:
    """One line: how many of the shop's expectations passed, and each failure in the loader's words."""
    failed = [c for c in checks if not c.success]
    head = f"{len(checks) - len(failed)}/{len(checks)} expectations passed"
    return head if not failed else head + "; " + "; ".join(c.message for c in failed)
