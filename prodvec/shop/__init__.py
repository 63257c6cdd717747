"""A shop's input data: the contract loader and the in-memory `Shop` it returns."""

from prodvec.shop.errors import ContractError
from prodvec.shop.loader import load_shop
from prodvec.shop.model import Shop

__all__ = ["ContractError", "Shop", "load_shop"]
