"""The web portal: pages, JSON API, models and money. Never imports ``scheduler``."""
