"""The customer's usage page (``GET /usage/page``, ``GET /portal``): its HTML, and its signed links."""
