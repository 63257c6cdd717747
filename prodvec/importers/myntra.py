"""Myntra fashion catalogue (Kaggle "Fashion Product Images"): `styles.csv` plus `images/<id>.jpg`.

    prodvec import myntra path/to/myntra workspace/myntra_shop

The source folder holds `styles.csv` with the columns `id, gender,
masterCategory, subCategory, articleType, baseColour, season, year, usage,
productDisplayName` and, optionally, `images/<id>.jpg`. The result is a
catalogue-only shop (no events, no orders), so the content families train on
it and the behavioural ones are skipped:

- `product_id` = `id`; `title` = `productDisplayName`; `category` = `articleType`;
- every other column except `year` (gender, masterCategory, subCategory,
  baseColour, season, usage, and any extra column a newer export adds) is
  string side information; an empty cell or the literal `NA` means unknown
  (null);
- `created_at` = 1 January of `year`, 00:00 UTC (the catalogue has no finer
  listing time);
- `image_path` = `images/<id>.jpg` for ids whose photo exists (copied into the
  shop, so the shop stays valid when the source moves); photos of ids not in
  the catalogue are counted and ignored.

What happens to bad rows, per column (every drop is logged with its count and
an example row; nothing is dropped silently):

- `id` empty or repeated: the import stops with the row (an id is the key of
  everything downstream; guessing which duplicate is right is not ours to do);
- `productDisplayName` or `articleType` empty or `NA`: the row is dropped (the
  text families and the category need them; a handful in 44k rows);
- `year` empty or `NA`: kept, listed as of the *latest* year in the file, so no
  snapshot older than the catalogue's end claims to know the product; a year
  that is not a whole number stops the import with the row;
- a line with more fields than the header (the original Kaggle file has names
  with unquoted commas): the surplus fields are joined back into the last
  column, `productDisplayName`, and counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.importers import io

STYLES_FILE = "styles.csv"
IMAGES_DIR = "images"
ID, TITLE, CATEGORY, YEAR = "id", "productDisplayName", "articleType", "year"
# Cells that mean "unknown" in the published file.
MISSING = ("", "NA")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def import_shop(source: Path, shop_dir: Path, *, overwrite: bool = False, log=print, **options) -> Path:
    """Write the Myntra catalogue in `source` as a shop into `shop_dir`; return `shop_dir`.

    `images=False` leaves the photos out (a text-only catalogue).
    """
    with_images = options.pop("images", True)
    if options:
        raise TypeError(f"myntra importer: unknown option(s) {sorted(options)}; known: images, log")
    io.refuse_existing(Path(shop_dir), overwrite)
    source = Path(source)
    styles = read_styles(source / STYLES_FILE, log)
    products = styles_to_products(styles, log)
    images = None
    if with_images:
        images = find_images(source / IMAGES_DIR, products[C.PRODUCT_ID], log)
    return io.write_shop(shop_dir, products, images=images, overwrite=overwrite, log=log)


def read_styles(path: Path, log=print) -> pd.DataFrame:
    """styles.csv as strings, unknown cells null, names with unquoted commas re-joined."""
    joined = []

    def rejoin(fields: list[str]) -> list[str]:
        # Only the last column, free text, can absorb a stray comma.
        joined.append(fields[0])
        return fields[: width - 1] + [",".join(fields[width - 1:])]

    header = io.read_csv(path, nrows=0)
    io.require_columns(header, path.name, [ID, TITLE, CATEGORY, YEAR])
    width = len(header.columns)
    if header.columns[-1] != TITLE:
        rejoin = "error"  # a stray comma could not be placed; let the parser report the line
    styles = io.read_csv(path, dtype=str, keep_default_na=False, engine="python", on_bad_lines=rejoin)
    if joined:
        log(f"{path.name}: {len(joined)} lines had more fields than the header; their extra commas were kept "
            f"in {TITLE} (e.g. id {joined[0]})")
    styles = styles.apply(lambda col: col.str.strip())
    return styles.mask(styles.isin(MISSING), None)


def styles_to_products(styles: pd.DataFrame, log=print) -> pd.DataFrame:
    """The contract's products table from styles.csv rows (see the module docstring for the rules)."""
    file, keys = STYLES_FILE, (ID,)
    io.reject_rows(styles, styles[ID].isna(), file, ID, "must not be empty", keys)
    io.reject_rows(styles, styles[ID].duplicated(keep=False), file, ID, "must be unique", keys)
    styles = io.drop_rows(styles, styles[TITLE].isna(), file, TITLE, "no product name", log, keys)
    styles = io.drop_rows(styles, styles[CATEGORY].isna(), file, CATEGORY, "no article type", log, keys)
    if styles.empty:
        raise io.SourceError(file, None, "has no product left to import")

    year = pd.to_numeric(styles[YEAR], errors="coerce")
    io.reject_rows(styles, styles[YEAR].notna() & ~(np.isfinite(year) & (year == np.round(year))), file, YEAR,
                   "must be a whole year like 2012", keys)
    io.reject_rows(styles, (year < 1900) | (year > 2200), file, YEAR, "must lie between 1900 and 2200", keys)
    if year.isna().all():
        raise io.SourceError(file, YEAR, "has no year in any row; the listing time cannot be derived")
    if year.isna().any():
        latest = int(year.max())
        log(f"{file}, column {YEAR!r}: {int(year.isna().sum())} rows without a year are listed as of {latest}, "
            f"the latest year in the file (e.g. id {styles.loc[year.isna(), ID].iloc[0]})")
        year = year.fillna(latest)
    created_at = pd.to_datetime(year.astype(int).astype(str), format="%Y").dt.tz_localize("UTC")

    side_info = [c for c in styles.columns if c not in (ID, TITLE, CATEGORY, YEAR)]
    return pd.DataFrame({
        C.PRODUCT_ID: styles[ID],
        C.CREATED_AT: created_at.dt.as_unit("ns"),
        C.TITLE: styles[TITLE],
        C.CATEGORY: styles[CATEGORY],
        **{column: styles[column].astype(object) for column in side_info},
    })


def find_images(folder: Path, product_ids: pd.Series, log=print) -> pd.Series | None:
    """product_id -> photo file, for ids with `<id>.jpg` (or .jpeg/.png) in `folder`; None without a folder."""
    if not folder.is_dir():
        log(f"{folder}: no image folder; the shop has no images")
        return None
    files = pd.Series([p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()],
                      dtype=object)
    if files.empty:
        return None
    # One photo per id: prefer .jpg, then .jpeg, then .png.
    files = pd.DataFrame({"id": files.map(lambda p: p.stem), "path": files,
                          "rank": files.map(lambda p: IMAGE_SUFFIXES.index(p.suffix.lower()))})
    files = files.sort_values(["id", "rank"]).drop_duplicates("id")
    known = files["id"].isin(product_ids)
    if (~known).any():
        log(f"{folder}: {int((~known).sum())} photos of ids not in the catalogue were ignored "
            f"(e.g. {files.loc[~known, 'path'].iloc[0].name})")
    return files[known].set_index("id")["path"].rename(None)
