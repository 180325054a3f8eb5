"""The shop outside the flash sale: the catalogue of products, carts and orders."""
