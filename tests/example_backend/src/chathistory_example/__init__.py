"""An example third-party backend, built only on chathistory's public API."""
