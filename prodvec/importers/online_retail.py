"""UCI Online Retail invoices (a UK gift shop): one CSV line per invoice line, cancellations included.

    prodvec import online-retail path/to/online_retail.csv workspace/retail_shop

The source is the CSV export of the UCI "Online Retail" data set, columns
`InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice,
CustomerID, Country` (SOURCE may be the file or a folder holding
`online_retail.csv`). The shop it becomes:

- **Times.** `InvoiceDate` is naive wall-clock time of the shop in the UK;
  it is read as Europe/London (GMT in winter, BST in summer) and converted to
  UTC explicitly (option `tz` to change the zone). Both the source's
  `2010-12-01 08:26:00` and the original `12/1/2010 8:26` (month first) parse.
- **Sales** are the lines of ordinary invoices with Quantity > 0 and
  UnitPrice > 0 whose StockCode is a product. Not products, and dropped with a
  count: postage, carriage, fees, discounts, manual entries, samples, bad-debt
  adjustments and gift vouchers (`SERVICE_CODES`). Also dropped with a count:
  non-cancellation lines with Quantity <= 0 or UnitPrice <= 0 (stock
  write-offs noted "damaged", "check", ... with no price).
- **products**: one per StockCode that has a sale; `title` = its most common
  Description over its sales (ties: the first seen), `price` = median
  UnitPrice of its sales, `created_at` = its first sale. Country is per
  invoice, not per product, so it is on orders and events, never on products.
- **events**: one `purchase` event per sale, `session_id` = InvoiceNo (one
  session per invoice), `user_id` = CustomerID, or `guest-<InvoiceNo>` for
  invoices without a customer (each such invoice is its own anonymous buyer:
  the co-purchase signal is kept, no shopper is invented). Extra columns:
  `quantity`, `country`.
- **orders**: one line per sale *with a customer*, `order_id` = InvoiceNo,
  `price` = UnitPrice, `size` null; extra columns `quantity`, `country`.
  Sales without a customer are left out of orders (and counted): a return can
  only be matched to a known customer, and a return model needs the buyer's
  history. A missing CustomerID is an empty cell or 0 (the published sample
  writes unknown customers as 0.0).
- **returns.** A cancellation line (InvoiceNo starting with `C`, Quantity < 0)
  marks one order line returned: the earliest not yet marked line of the same
  customer and StockCode ordered at or before it, taking cancellations in
  time order; `returned_at` = the cancellation's time. Quantities are not
  matched (a partial cancellation still marks the line). Cancellations that
  find no such line (the order predates the file, or no customer) are
  counted and reported.

A line the parser cannot read (a time or a number that does not parse, an
empty StockCode or InvoiceNo) stops the import with the line's example.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.importers import io

CSV_FILE = "online_retail.csv"
INVOICE, STOCK, DESCRIPTION, QUANTITY, DATE, UNIT_PRICE, CUSTOMER, COUNTRY = (
    "InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")
COLUMNS = (INVOICE, STOCK, DESCRIPTION, QUANTITY, DATE, UNIT_PRICE, CUSTOMER, COUNTRY)
SHOP_TZ = "Europe/London"
# StockCodes that are charges, fees or bookkeeping, not goods (matched whole, case-insensitive).
SERVICE_CODES = r"POST|DOT|C2|M|D|S|B|CRUK|PADS|BANK CHARGES|AMAZONFEE|gift_\d+_\d+"
GUEST_PREFIX = "guest-"
QUANTITY_COL, COUNTRY_COL = "quantity", "country"


def import_shop(source: Path, shop_dir: Path, *, overwrite: bool = False, log=print, **options) -> Path:
    """Write the invoices in `source` as a shop into `shop_dir`; return `shop_dir`.

    Options: `tz` (the zone of InvoiceDate, default Europe/London), `encoding`
    (of the CSV, default utf-8; exports of the original spreadsheet are often latin-1).
    """
    tz = options.pop("tz", SHOP_TZ)
    encoding = options.pop("encoding", "utf-8")
    if options:
        raise TypeError(f"online-retail importer: unknown option(s) {sorted(options)}; known: tz, encoding, log")
    io.refuse_existing(Path(shop_dir), overwrite)
    source = Path(source)
    path = source / CSV_FILE if source.is_dir() else source
    lines = read_lines(path, tz, encoding)
    products, events, orders = lines_to_shop(lines, path.name, log)
    return io.write_shop(shop_dir, products, events, orders, overwrite=overwrite, log=log)


def read_lines(path: Path, tz: str = SHOP_TZ, encoding: str = "utf-8") -> pd.DataFrame:
    """The CSV with typed columns: `ts` (UTC), integer quantity, float price, customer id or None."""
    raw = io.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)
    io.require_columns(raw, path.name, COLUMNS)
    raw = raw.apply(lambda col: col.str.strip())
    keys = (INVOICE, STOCK)
    for column in (INVOICE, STOCK):
        io.reject_rows(raw, raw[column].eq(""), path.name, column, "must not be empty", keys)
    quantity = pd.to_numeric(raw[QUANTITY], errors="coerce")
    io.reject_rows(raw, ~(np.isfinite(quantity) & (quantity == np.round(quantity))), path.name, QUANTITY,
                   "must be a whole number", keys)
    price = pd.to_numeric(raw[UNIT_PRICE], errors="coerce")
    io.reject_rows(raw, ~np.isfinite(price), path.name, UNIT_PRICE, "must be a number", keys)
    io.reject_rows(raw, raw[DATE].eq(""), path.name, DATE, "must not be empty", keys)
    naive = io.parse_times(raw, DATE, path.name, keys=keys)
    customer = pd.to_numeric(raw[CUSTOMER], errors="coerce")
    # Customer ids are numbers in this data; 0 and empty stand for "unknown".
    known = raw[CUSTOMER].ne("") & ~(customer == 0)
    return pd.DataFrame({
        INVOICE: raw[INVOICE], STOCK: raw[STOCK],
        DESCRIPTION: raw[DESCRIPTION].mask(raw[DESCRIPTION].eq(""), None),
        QUANTITY: quantity.astype(np.int64), UNIT_PRICE: price.astype(np.float64),
        # Numeric ids lose pandas' ".0"; any other id is kept as written.
        CUSTOMER: io.id_strings(customer).where(customer.notna(), raw[CUSTOMER]).where(known, None),
        COUNTRY: raw[COUNTRY].mask(raw[COUNTRY].eq(""), None),
        "ts": io.local_to_utc(naive, tz),
    })


def lines_to_shop(lines: pd.DataFrame, file: str = CSV_FILE, log=print
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """products, events and orders from typed invoice lines (see the module docstring)."""
    keys = (INVOICE, STOCK)
    lines = lines.reset_index(drop=True)
    service = lines[STOCK].str.fullmatch(SERVICE_CODES, case=False)
    lines = io.drop_rows(lines, service, file, STOCK, "charges, fees or vouchers, not products", log,
                         (*keys, DESCRIPTION))
    cancelled = lines[INVOICE].str.upper().str.startswith("C")
    cancellations = io.drop_rows(lines[cancelled], lines.loc[cancelled, QUANTITY] >= 0, file, QUANTITY,
                                 "cancellations with a non-negative quantity", log, keys)
    lines = lines[~cancelled]
    lines = io.drop_rows(lines, lines[QUANTITY] <= 0, file, QUANTITY,
                         "stock adjustments (quantity <= 0 outside a cancellation)", log, (*keys, DESCRIPTION))
    sales = io.drop_rows(lines, lines[UNIT_PRICE] <= 0, file, UNIT_PRICE,
                         "no positive price (write-offs, samples)", log, (*keys, DESCRIPTION))
    if sales.empty:
        raise io.SourceError(file, None, "has no sale (a line with positive quantity and price) to import")
    # Time order; the index stays the source line, so examples in messages point into the file.
    sales = sales.sort_values(["ts", INVOICE], kind="stable")

    products = _products(sales)
    events = pd.DataFrame({
        C.SESSION_ID: sales[INVOICE],
        C.USER_ID: sales[CUSTOMER].fillna(GUEST_PREFIX + sales[INVOICE]),
        C.PRODUCT_ID: sales[STOCK],
        C.EVENT_TYPE: C.PURCHASE,
        C.TS: sales["ts"],
        QUANTITY_COL: sales[QUANTITY],
        COUNTRY_COL: sales[COUNTRY],
    })
    bought = io.drop_rows(sales, sales[CUSTOMER].isna(), file, CUSTOMER,
                          "sales without a customer (kept as a guest's events, left out of orders)", log, keys)
    returned_at = match_returns(bought, cancellations)
    unmatched = len(cancellations) - int(returned_at.notna().sum())
    if unmatched:
        log(f"{file}: {unmatched} of {len(cancellations)} cancellation lines matched no earlier order line of "
            f"the same customer and StockCode (ordered before the file starts, or no customer); not used")
    orders = pd.DataFrame({
        C.ORDER_ID: bought[INVOICE],
        C.USER_ID: bought[CUSTOMER],
        C.PRODUCT_ID: bought[STOCK],
        C.ORDERED_AT: bought["ts"],
        C.PRICE: bought[UNIT_PRICE],
        C.SIZE: pd.Series(None, index=bought.index, dtype=object),
        C.RETURNED: returned_at.notna(),
        C.RETURNED_AT: returned_at,
        QUANTITY_COL: bought[QUANTITY],
        COUNTRY_COL: bought[COUNTRY],
    })
    return products, events, orders


def _products(sales: pd.DataFrame) -> pd.DataFrame:
    """One row per StockCode: modal description, median price, first sale (sales sorted by time)."""
    grouped = sales.groupby(STOCK, sort=True)
    described = sales[sales[DESCRIPTION].notna()]
    counts = (described.assign(line=described.index)
              .groupby([STOCK, DESCRIPTION], sort=False)
              .agg(n=("ts", "size"), first=("ts", "min"), line=("line", "min")))
    # Most common; among equally common, the one seen first.
    counts = counts.reset_index().sort_values([STOCK, "n", "first", "line"], ascending=[True, False, True, True])
    title = counts.drop_duplicates(STOCK).set_index(STOCK)[DESCRIPTION]
    products = pd.DataFrame({
        C.CREATED_AT: grouped["ts"].min(),
        C.PRICE: grouped[UNIT_PRICE].median().astype(np.float64),
    })
    products[C.TITLE] = title.reindex(products.index)
    # A product sold only under blank descriptions still needs a non-empty title.
    products[C.TITLE] = products[C.TITLE].fillna(products.index.to_series().map(lambda code: f"StockCode {code}"))
    return products.rename_axis(C.PRODUCT_ID).reset_index()[[C.PRODUCT_ID, C.CREATED_AT, C.TITLE, C.PRICE]]


def match_returns(orders: pd.DataFrame, cancellations: pd.DataFrame) -> pd.Series:
    """For each order line (index of `orders`), the time of the cancellation that returns it, else NaT.

    Per customer and StockCode, cancellations in time order each take the
    earliest order line not yet taken that was placed at or before them. The
    taken lines are always a prefix of the group's orders in time order, so
    the k-th cancellation that finds a line gets the k-th order line, and a
    cancellation finds one exactly when the group has more orders than matched
    cancellations by then. Running balance S (+1 per order, -1 per
    cancellation, orders first at equal times): a cancellation goes unmatched
    exactly when S reaches a new low below zero, so the whole match is a
    grouped cumulative sum and minimum, no loop.
    """
    out = pd.Series(pd.NaT, index=orders.index, dtype="datetime64[ns, UTC]")
    cancellations = cancellations[cancellations[CUSTOMER].notna()]
    if orders.empty or cancellations.empty:
        return out
    group = [CUSTOMER, STOCK]
    both = pd.concat([
        pd.DataFrame({CUSTOMER: orders[CUSTOMER], STOCK: orders[STOCK], "ts": orders["ts"], "step": 1,
                      "row": orders.index}),
        pd.DataFrame({CUSTOMER: cancellations[CUSTOMER], STOCK: cancellations[STOCK], "ts": cancellations["ts"],
                      "step": -1, "row": -1}),
    ], ignore_index=True)
    # Orders before cancellations at the same time (a cancellation may follow within the minute).
    both = both.sort_values([*group, "ts", "step"], ascending=[True, True, True, False], kind="stable")
    by = [both[CUSTOMER], both[STOCK]]
    balance = both["step"].groupby(by, sort=False).cumsum()
    low_before = balance.groupby(by, sort=False).cummin().groupby(by, sort=False).shift(fill_value=0).clip(upper=0)
    is_cancel = both["step"] < 0
    matched = is_cancel & (balance >= low_before)
    taken = both[matched].assign(k=lambda d: d.groupby(group, sort=False).cumcount())
    placed = both[~is_cancel].assign(k=lambda d: d.groupby(group, sort=False).cumcount())
    pairs = placed.merge(taken[[*group, "k", "ts"]], on=[*group, "k"], suffixes=("", "_returned"))
    out.loc[pairs["row"].to_numpy()] = pairs["ts_returned"].to_numpy()
    return out
