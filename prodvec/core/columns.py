"""Column and file names of the shop contract and of snapshots, in one place.

Every module refers to these constants instead of spelling the strings, so a
renamed column is one edit (see ../shared/contract.md for the rules).
"""

# -- shop files -------------------------------------------------------------
PRODUCTS_FILE = "products.parquet"
EVENTS_FILE = "events.parquet"
ORDERS_FILE = "orders.parquet"
IMAGES_DIR = "images"

# -- products.parquet --------------------------------------------------------
PRODUCT_ID = "product_id"
CREATED_AT = "created_at"
TITLE = "title"
DESCRIPTION = "description"
CATEGORY = "category"
PRICE = "price"
IMAGE_PATH = "image_path"
# Columns with a fixed meaning; every *other* string column is side information.
PRODUCT_CORE_COLUMNS = (PRODUCT_ID, CREATED_AT, TITLE, DESCRIPTION, CATEGORY, PRICE, IMAGE_PATH)

# -- events.parquet -----------------------------------------------------------
SESSION_ID = "session_id"
USER_ID = "user_id"
EVENT_TYPE = "event_type"
TS = "ts"
IMPRESSION, CLICK, ADD_TO_CART, PURCHASE = "impression", "click", "add_to_cart", "purchase"
EVENT_TYPES = (IMPRESSION, CLICK, ADD_TO_CART, PURCHASE)

# -- orders.parquet -----------------------------------------------------------
ORDER_ID = "order_id"
ORDERED_AT = "ordered_at"
SIZE = "size"
RETURNED = "returned"
RETURNED_AT = "returned_at"

# -- snapshots ----------------------------------------------------------------
EMBEDDING = "embedding"
EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"
