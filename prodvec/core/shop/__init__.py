"""A shop's input data: the contract loader and the in-memory `Shop` it returns."""

from prodvec.core.shop.errors import ContractError
from prodvec.core.shop.loader import load_shop
from prodvec.core.shop.model import Shop

__all__ = ["ContractError", "Shop", "load_shop"]
